// Every CLI command, in the order --help lists them. A command is one module exporting a yargs CommandModule.
import type { CommandModule } from 'yargs';
import { scoreCommand } from './score.js';
import { exportCommand } from './export.js';
import { verifyCommand } from './verify.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [
  scoreCommand,
  exportCommand,
  verifyCommand,
];
