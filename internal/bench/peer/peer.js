#!/usr/bin/env node
// The peer that scripts/bench compares secretfs with: nodecredstash (pinned
// in package-lock.json) reading a credstash secret from the same DynamoDB
// and KMS as secretfs. It uses credstash's own table layout, in its own
// table.
//
//   node peer.js setup --table T --kms-key alias/K --name N --size BYTES
//       creates the table if it is missing and stores a secret of BYTES
//       printable bytes as version 1 (kept if it is already there)
//   node peer.js get --table T --name N --size BYTES --n COUNT [--warmup W]
//       reads the latest version W times untimed, then COUNT times timed,
//       one after another, checking each value's length
//
// Endpoints, region and credentials come from the environment:
// AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL_KMS (the variables the
// secretfs binary reads; the AWS SDK v2 used by nodecredstash does not, so
// they are passed on here), AWS_REGION, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY. Each command prints one JSON object on stdout.
'use strict';

process.env.AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE = '1';
const Credstash = require('nodecredstash');

function flags(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`bad argument ${argv[i]}: want --flag value pairs`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

function need(opts, name) {
  if (opts[name] === undefined) {
    throw new Error(`--${name} is required`);
  }
  return opts[name];
}

function endpoint(variable) {
  const url = process.env[variable];
  if (!url) {
    throw new Error(`${variable} is not set`);
  }
  return url;
}

// value is the secret both commands agree on: printable, SIZE bytes.
function value(size) {
  return 'x'.repeat(size);
}

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  const opts = flags(rest);
  const region = process.env.AWS_REGION;
  const credstash = new Credstash({
    table: need(opts, 'table'),
    kmsKey: opts['kms-key'],
    awsOpts: { region },
    dynamoOpts: { endpoint: endpoint('AWS_ENDPOINT_URL_DYNAMODB') },
    kmsOpts: { endpoint: endpoint('AWS_ENDPOINT_URL_KMS') },
  });
  const name = need(opts, 'name');
  const size = Number(need(opts, 'size'));

  switch (command) {
    case 'setup': {
      need(opts, 'kms-key');
      await credstash.createDdbTable();
      try {
        await credstash.putSecret({ name, secret: value(size), version: 1 });
      } catch (err) {
        if (!/already in the credential store/.test(err.message)) {
          throw err;
        }
      }
      console.log(JSON.stringify({ command, table: opts.table, name, size }));
      return;
    }
    case 'get': {
      const n = Number(need(opts, 'n'));
      const warmup = Number(opts.warmup || 0);
      const read = async () => {
        const got = await credstash.getSecret({ name });
        if (got.length !== size) {
          throw new Error(`getSecret returned ${got.length} bytes, want ${size}`);
        }
      };
      for (let i = 0; i < warmup; i++) {
        await read();
      }
      const samples = [];
      for (let i = 0; i < n; i++) {
        const start = process.hrtime.bigint();
        await read();
        samples.push(Number(process.hrtime.bigint() - start));
      }
      const sorted = [...samples].sort((a, b) => a - b);
      console.log(JSON.stringify({
        command,
        calls: warmup + n,
        n,
        median_ns: sorted[Math.floor((n - 1) / 2)],
        samples_ns: samples,
      }));
      return;
    }
    default:
      throw new Error(`unknown command ${command}: want setup or get`);
  }
}

main().catch((err) => {
  console.error(`peer: ${err.stack || err}`);
  process.exit(1);
});
