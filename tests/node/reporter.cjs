// A node:test reporter that writes one JSON line per finished top-level test: its file, name,
// whether it passed and, when it failed, the error. tests/sdk/test_node_sdks.py reads these lines
// and reports every case as a pytest test of its own.
"use strict";

module.exports = async function* jsonLines(source) {
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const data = event.data;
    if (data.nesting !== 0 || (data.details && data.details.type === "suite")) continue;
    const line = {
      file: data.file ? require("node:path").basename(data.file) : null,
      name: data.name,
      passed: event.type === "test:pass",
      skipped: Boolean(data.skip),
      duration_ms: data.details ? data.details.duration_ms : null,
    };
    if (!line.passed) {
      const err = data.details && data.details.error;
      const cause = err && err.cause ? err.cause : err;
      line.error = cause ? String((cause && cause.stack) || cause) : "failed";
    }
    yield JSON.stringify(line) + "\n";
  }
};
