#!/usr/bin/env node
// Drive an MCP server with the TypeScript SDK's `Client` + `StreamableHTTPClientTransport`,
// unmodified. Runs on Node 20 with @modelcontextprotocol/sdk 1.32.2 from .test-deps/node-sdk
// (MCP_TS_SDK_DIR=DIR points at another npm project holding the SDK).
//
//   node tests/gateway_clients/ts_client.mjs --url URL [--scope S] --scenario basic|counter
//        [--timeout SECONDS] [--no-terminate]
//
// The scope goes in the X-Mcpwatch-Scope header, through the transport's `requestInit`.
// At the end the session is ended with DELETE (`transport.terminateSession()`), unless
// --no-terminate, then the client is closed.
//
// Scenarios (the last stdout line is one JSON object; exit 1 with a reason on stderr):
//   basic    list tools, call echo, call counter twice
//            {"client", "scenario", "protocol_version", "server_name", "tools", "echo", "counter": [a, b], "session_id"}
//   counter  call counter once: {"client", "scenario", "protocol_version", "server_name", "counter": n, "session_id"}

import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const CLIENT_NAME = "ts";
const SCOPE_HEADER = "X-Mcpwatch-Scope";
const SCENARIOS = ["basic", "counter"];

const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = resolve(process.env.MCP_TS_SDK_DIR ?? join(here, "..", "..", ".test-deps", "node-sdk"));
const sdkModule = (path) =>
  import(pathToFileURL(join(sdkDir, "node_modules", "@modelcontextprotocol", "sdk", "dist", "esm", path)).href);

class ScenarioFailed extends Error {}

function fail(what, error) {
  let detail = error === undefined ? "" : `: ${error?.stack ?? error}`;
  if (error?.cause) detail += `\n  cause: ${error.cause}`;
  process.stderr.write(`FAILED: ${what}${detail}\n`);
  process.exit(1);
}

function parseCommandLine() {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      scope: { type: "string" },
      scenario: { type: "string" },
      timeout: { type: "string", default: "30" },
      "no-terminate": { type: "boolean", default: false },
    },
  });
  if (!values.url) fail("--url is required");
  if (!SCENARIOS.includes(values.scenario)) fail(`--scenario must be one of ${SCENARIOS.join(", ")}`);
  const timeoutS = Number(values.timeout);
  if (!(timeoutS > 0)) fail(`--timeout must be a positive number of seconds, not ${values.timeout}`);
  return { ...values, timeoutMs: timeoutS * 1000 };
}

function textOf(result) {
  const block = (result.content ?? []).find((b) => b.type === "text");
  if (!block) throw new ScenarioFailed(`no text content in ${JSON.stringify(result)}`);
  return block.text;
}

function counterValue(result) {
  if (result.isError) throw new ScenarioFailed(`counter returned an error result: ${JSON.stringify(result)}`);
  const value = Number.parseInt(textOf(result), 10);
  if (Number.isNaN(value)) throw new ScenarioFailed(`counter returned ${JSON.stringify(textOf(result))}, not a number`);
  return value;
}

async function run(args) {
  const { Client } = await sdkModule("client/index.js");
  const { StreamableHTTPClientTransport } = await sdkModule("client/streamableHttp.js");
  const headers = args.scope ? { [SCOPE_HEADER]: args.scope } : {};
  const transport = new StreamableHTTPClientTransport(new URL(args.url), { requestInit: { headers } });
  const client = new Client({ name: "mcpwatch-gateway-test-ts", version: "1.0.0" });
  const options = { timeout: args.timeoutMs };
  const result = { client: CLIENT_NAME, scenario: args.scenario };
  await client.connect(transport, options);
  try {
    result.protocol_version = transport.protocolVersion ?? null;
    result.server_name = client.getServerVersion()?.name ?? null;
    result.session_id = transport.sessionId ?? null;
    const call = (name, toolArgs) => client.callTool({ name, arguments: toolArgs }, undefined, options);
    if (args.scenario === "basic") {
      const tools = await client.listTools(undefined, options);
      result.tools = tools.tools.map((t) => t.name).sort();
      result.echo = textOf(await call("echo", { message: "hello gateway" }));
      if (result.echo !== "hello gateway") throw new ScenarioFailed(`echo answered ${JSON.stringify(result.echo)}`);
      result.counter = [counterValue(await call("counter", {})), counterValue(await call("counter", {}))];
    } else {
      result.counter = counterValue(await call("counter", {}));
    }
    if (!args["no-terminate"]) await transport.terminateSession();
  } finally {
    await client.close();
  }
  return result;
}

const args = parseCommandLine();
let timer;
const deadline = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new ScenarioFailed(`did not finish within ${args.timeoutMs / 1000} s`)), args.timeoutMs);
});
try {
  const result = await Promise.race([run(args), deadline]);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (error) {
  fail(`${CLIENT_NAME} ${args.scenario} against ${args.url}`, error instanceof ScenarioFailed ? error.message : error);
} finally {
  clearTimeout(timer);
}
