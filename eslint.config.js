// Lint rules, including the module boundaries of ../shared/ARCHITECTURE.md.
import tseslint from 'typescript-eslint';

const spawnAndMount = [
  { name: 'node:child_process', message: 'only agent/sys/ spawns processes (ARCHITECTURE.md boundaries)' },
  { name: 'child_process', message: 'only agent/sys/ spawns processes (ARCHITECTURE.md boundaries)' },
];

export default tseslint.config(
  { ignores: ['dist/**', '.build-*/**', 'node_modules/**', 'proto/gen/**', 'coverage/**', 'agent/sys/native/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts', '**/*.cts'],
    rules: {
      // CommonJS TypeScript (cmd/*.cts) imports with `import x = require(...)`, as verbatimModuleSyntax asks.
      '@typescript-eslint/no-require-imports': ['error', { allowAsImport: true }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error', { selector: 'ExportDefaultDeclaration', message: 'named exports only' }],
    },
  },
  {
    files: ['controller/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: spawnAndMount,
        patterns: [
          { group: ['**/agent/**', '../agent/*'], message: 'controller/ and agent/ never import each other' },
        ],
      }],
    },
  },
  {
    files: ['controller/**/*.ts'],
    ignores: ['controller/store/**'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [...spawnAndMount, { name: 'etcd3', message: 'etcd3 is imported only in controller/store/' }],
        patterns: [{ group: ['**/agent/**'], message: 'controller/ and agent/ never import each other' }],
      }],
    },
  },
  {
    files: ['agent/**/*.ts'],
    ignores: ['agent/sys/**'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [...spawnAndMount, { name: 'etcd3', message: 'the agent never talks to etcd' }],
        patterns: [{ group: ['**/controller/**'], message: 'controller/ and agent/ never import each other' }],
      }],
    },
  },
  {
    files: ['cli/**/*.ts', 'lib/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [...spawnAndMount, { name: 'etcd3', message: 'only controller/store/ talks to etcd' }],
        patterns: [{ group: ['**/controller/**', '**/agent/**'], message: 'cli/ and lib/ use only proto/gen and lib/' }],
      }],
    },
  },
);
