// An unmodified jsforce session, pointed at forcelink instead of Salesforce.
//
// instanceUrl is forcelink's /v1/proxy/{orgid} and the agent key is the access token. The
// connection lives across rounds: for each line "round" on stdin it runs a SOQL query that
// auto-fetches every page (batchSize=200, so nextRecordsUrl locators are followed), reads one
// record with sobject().retrieve() and once more through its relative attributes.url, then
// prints one JSON line. Errors are printed, never thrown. TLS trust: NODE_EXTRA_CA_CERTS.
'use strict';

const readline = require('node:readline');
const jsforce = require('jsforce');

const conn = new jsforce.Connection({
  instanceUrl: process.env.FORCELINK_INSTANCE_URL,
  accessToken: process.env.FORCELINK_AGENT_KEY,
  version: '59.0',
});

async function round() {
  const records = [];
  const query = conn.query('SELECT Id, Name FROM Account', {
    autoFetch: true,
    maxFetch: 100000,
    headers: { 'Sforce-Query-Options': 'batchSize=200' },
  });
  query.on('record', (record) => records.push(record));
  await query.run({ autoFetch: true, maxFetch: 100000 });
  const first = records[0];
  const retrieved = await conn.sobject('Account').retrieve(first.Id);
  const byUrl = await conn.request(first.attributes.url);
  return {
    ok: true,
    total_size: query.totalSize,
    fetched: records.length,
    record_matches:
      retrieved.Id === first.Id && retrieved.Name === first.Name && byUrl.Id === first.Id,
  };
}

const input = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
input.on('line', (line) => {
  const command = line.trim();
  queue = queue.then(async () => {
    if (command === 'quit') {
      process.exit(0);
    }
    if (command !== 'round') {
      return;
    }
    try {
      console.log(JSON.stringify(await round()));
    } catch (error) {
      console.log(JSON.stringify({ ok: false, error: `${error.name}: ${error.message}` }));
    }
  });
});
