// Every CLI command, in the order --help lists them. A command is one module exporting a yargs CommandModule.
import type { CommandModule } from 'yargs';
import { scoreCommand } from './score.js';
import { exportCommand } from './export.js';
import { selectCommand } from './select.js';
import { verifyCommand } from './verify.js';
import { statsCommand } from './stats.js';
import { showCommand } from './show.js';
import { reportCommand } from './report.js';
import { launchCommand } from './launch.js';
import { statusCommand } from './status.js';
import { manifestCommand } from './manifest.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [
  scoreCommand,
  exportCommand,
  selectCommand,
  verifyCommand,
  statsCommand,
  showCommand,
  reportCommand,
  launchCommand,
  statusCommand,
  manifestCommand,
];
