// The CLI bundle's stand-in for @grpc/grpc-js (scripts/bundle-cli.mjs aliases
// the package to this file). The CLI speaks gRPC with its own small client,
// cli/rpc.ts; the generated modules it imports (proto/gen) still call
// makeGenericClientConstructor when they load, so that function must exist.
// The client classes it returns are never used by the CLI, and say so if
// they are.
'use strict';
exports.makeGenericClientConstructor = function makeGenericClientConstructor(_service, serviceName) {
  return class {
    constructor() {
      throw new Error(`the berth CLI bundle has no @grpc/grpc-js: use cli/rpc.ts makeClient for ${serviceName}`);
    }
  };
};
