'use strict';
// Node CommonJS: `require` of the installed package (its "require" condition).
// Also the entry point of the esbuild bundle for Node.
const volley = require('volley-js');
const WebSocket = require('ws');

const scenario = require('./scenario.cjs');

scenario.main(volley, WebSocket, process.env.SCENARIO_LABEL || 'cjs');
