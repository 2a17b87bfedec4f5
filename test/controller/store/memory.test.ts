import { MemoryStore } from '../../../controller/store/index.js';
import { storeSuite } from './suite.js';

describe('MemoryStore', () => {
  storeSuite(
    async () => {
      const store = new MemoryStore();
      return { store, other: store };
    },
    async (f) => {
      await f.store.close();
    },
  );
});
