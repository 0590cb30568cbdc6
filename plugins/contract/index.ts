export * from './plugin';
export * from './errors';
export * from './templates';
export * from './duration';
export * from './schemas';
export * from './group-commit';
export * from './random';
