#!/usr/bin/env node
'use strict';
// The `runway` command. Runs the compiled build (`npm run build`).
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const entry = join(__dirname, '..', 'dist', 'src', 'cli.js');
if (!existsSync(entry)) {
  process.stderr.write('runway: not built yet; run `npm run build` (or `npm start`) first\n');
  process.exit(1);
}
require(entry).main(process.argv);
