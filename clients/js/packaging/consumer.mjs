// Node ESM: `import` of the installed package (its "import" condition).
import * as volley from 'volley-js';
import WebSocket from 'ws';

import scenario from './scenario.cjs';

scenario.main(volley, WebSocket, 'esm');
