/* The browser bundle's entry (the same API as the ES module). */
export * from './index.js';
