export { type ModeSelectFields, type ModeSenseFields, modeCommands, pageStoreOf } from './commands.js';
export {
  ModePageCode,
  ModePageStore,
  type ModePageStoreOptions,
  modePageCodes,
  type PageControl,
} from './pages.js';
