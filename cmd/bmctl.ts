#!/usr/bin/env node
// bmctl's entry point, and nothing else: the commands live in cmd/bmctl/
// (program.ts builds the tree). Nothing may import this file — it runs on import.
import { bmctlProgram } from "./bmctl/program.js";

// grpc-js sets the TLS server name to the target host even when it is an IP
// address, which makes Node print a deprecation warning: noise on a CLI whose
// errors are one line.
process.noDeprecation = true;

void bmctlProgram().parseAsync();
