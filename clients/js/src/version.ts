/** This SDK's version, sent in `connect` (kept equal to package.json by a test). */
export const VERSION = "0.1.0";
