import { main } from './cli';

// `nest start` and `node dist/src/main.js` start the server, as `runway serve` does.
void main([process.argv[0], process.argv[1], 'serve']);
