#!/usr/bin/env python3
"""An unmodified simple-salesforce session, pointed at forcelink instead of Salesforce.

forcelink's root is the instance URL (simple-salesforce keeps only host and port and always
builds https://{host}/services/data/...), the agent key is the session id. The session lives
across rounds: for each line "round" on stdin it runs a SOQL query that pages through
nextRecordsUrl (batchSize=200) and reads one record, then prints one JSON line. Errors are
printed, never raised, so the test sees every one. TLS trust comes from REQUESTS_CA_BUNDLE.
"""
import json
import os
import sys

from simple_salesforce import Salesforce

sf = Salesforce(
    instance_url=os.environ["FORCELINK_INSTANCE_URL"],
    session_id=os.environ["FORCELINK_AGENT_KEY"],
    version="59.0",
)

for line in sys.stdin:
    command = line.strip()
    if command == "quit":
        break
    if command != "round":
        continue
    try:
        result = sf.query_all(
            "SELECT Id, Name FROM Account",
            headers={"Sforce-Query-Options": "batchSize=200"},
        )
        records = result["records"]
        first = records[0]
        record = sf.Account.get(first["Id"])
        print(
            json.dumps(
                {
                    "ok": True,
                    "total_size": result["totalSize"],
                    "fetched": len(records),
                    "record_matches": record["Id"] == first["Id"]
                    and record["Name"] == first["Name"],
                }
            ),
            flush=True,
        )
    except Exception as error:  # noqa: BLE001 - the test wants to see any failure
        print(json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}), flush=True)
