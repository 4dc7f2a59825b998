#!/usr/bin/env node
import { main } from './main.js';

// process.exit, not exitCode: nothing may keep a stopped server alive. stdout and stderr are
// synchronous on Linux (files, pipes, terminals), so nothing written is lost.
process.exit(await main(process.argv.slice(2)));
