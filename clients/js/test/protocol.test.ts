import fs from "node:fs";
import { describe, expect, it } from "vitest";

import { VERSION, backoffDelay, closeAction, isTemporary } from "../src/index.js";

describe("closeAction (§13, the onClose of §17)", () => {
  it.each([
    [4000, "reconnect"],
    [4001, "reconnect"],
    [4002, "reconnect"],
    [4007, "reconnect"],
    [4399, "reconnect"],
    [4400, "new-token"],
    [4401, "new-token"],
    [4499, "new-token"],
    [4500, "stop"],
    [4501, "stop"],
    [4999, "stop"],
    [1000, "stop"],
    [1002, "stop"],
    [1003, "stop"],
    [1007, "stop"],
    [1001, "reconnect"],
    [1006, "reconnect"],
    [1009, "reconnect"],
    [1011, "reconnect"],
    [1013, "reconnect"],
    [3000, "reconnect"],
    [1004, "reconnect"],
  ])("close %i -> %s", (code, action) => {
    expect(closeAction(code)).toBe(action);
  });
});

describe("backoffDelay: full jitter, base 500, cap 20000 (§14.1)", () => {
  it("is 0 when the random draw is 0", () => {
    for (let n = 0; n < 10; n++) expect(backoffDelay(n, 500, 20_000, () => 0)).toBe(0);
  });
  it("stays below min(cap, base * 2^n)", () => {
    const top = () => 0.999999;
    expect(backoffDelay(0, 500, 20_000, top)).toBe(499);
    expect(backoffDelay(1, 500, 20_000, top)).toBe(999);
    expect(backoffDelay(2, 500, 20_000, top)).toBe(1999);
    expect(backoffDelay(5, 500, 20_000, top)).toBe(15_999);
    expect(backoffDelay(6, 500, 20_000, top)).toBe(19_999);
    expect(backoffDelay(1000, 500, 20_000, top)).toBe(19_999);
  });
  it("scales the draw linearly (uniform over the window)", () => {
    expect(backoffDelay(3, 500, 20_000, () => 0.25)).toBe(1000);
    expect(backoffDelay(3, 500, 20_000, () => 0.5)).toBe(2000);
  });
});

describe("isTemporary (§12)", () => {
  it("treats 100, 106 and 110 as temporary, others by their flag", () => {
    expect(isTemporary({ code: 100, message: "" })).toBe(true);
    expect(isTemporary({ code: 106, message: "" })).toBe(true);
    expect(isTemporary({ code: 110, message: "" })).toBe(true);
    expect(isTemporary({ code: 103, message: "" })).toBe(false);
    expect(isTemporary({ code: 1500, message: "", temporary: true })).toBe(true);
    expect(isTemporary({ code: 1500, message: "" })).toBe(false);
  });
});

describe("VERSION", () => {
  it("equals package.json's version", () => {
    const pkg = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    expect(VERSION).toBe(pkg.version);
  });
});
