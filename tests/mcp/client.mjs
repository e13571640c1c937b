// Drives sqlfs's POST /mcp with the official MCP TypeScript SDK client and prints a JSON summary
// of what it saw (tests/integration/test_mcp.py checks it).
// Usage: node client.mjs <server url> <bearer token>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url + "/mcp"), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "sqlfs-test", version: "1.0.0" });
await client.connect(transport);
const out = {
  serverInfo: client.getServerVersion(),
  capabilities: client.getServerCapabilities(),
  protocolVersion: transport.protocolVersion ?? null,
};

const call = (name, args) => client.callTool({ name, arguments: args });
const tools = await client.listTools();
out.tools = tools.tools.map((t) => t.name).sort();
out.allHaveSchemas = tools.tools.every((t) => t.inputSchema && t.outputSchema && t.description);

const created = await call("sandbox_create", { name: "mcp" });
const id = created.structuredContent.id;
out.created = { isError: !!created.isError, name: created.structuredContent.name };

const ex = await call("exec", { sandboxId: id, script: "echo hi; exit 3" });
out.exec = {
  isError: !!ex.isError,
  exitCode: ex.structuredContent.exitCode,
  stdout: ex.structuredContent.stdout,
  text: ex.content[0].text,
};

const w = await call("write_file", { sandboxId: id, path: "/home/user/a.txt", content: "one\ntwo\n" });
out.write = w.structuredContent;
const r1 = await call("read_file", { sandboxId: id, path: "/home/user/a.txt" });
out.read = { text: r1.content[0].text, content: r1.structuredContent.content };
const e = await call("edit_file", {
  sandboxId: id, path: "/home/user/a.txt", oldString: "two", newString: "three",
});
out.edit = e.structuredContent;
const r2 = await call("read_file", { sandboxId: id, path: "/home/user/a.txt" });
out.readAfterEdit = r2.structuredContent.content;

const tree = await call("list_tree", { sandboxId: id, prefix: "/home/user" });
out.tree = tree.structuredContent.entries.map((x) => x.path);

const commits = await call("commits", { sandboxId: id });
out.versions = commits.structuredContent.commits.map((c) => c.version);
const writeVersion = commits.structuredContent.commits.filter((c) => c.kind === "files").pop().version;
const d = await call("diff", { sandboxId: id, from: writeVersion, to: out.versions[0] });
out.diff = d.structuredContent.paths.map((p) => [p.path, p.change]);
const rs = await call("restore", { sandboxId: id, version: writeVersion });
out.restore = rs.structuredContent;
const r3 = await call("read_file", { sandboxId: id, path: "/home/user/a.txt" });
out.readAfterRestore = r3.structuredContent.content;

const f = await call("fork", { sandboxId: id, name: "copy" });
out.fork = { name: f.structuredContent.name, differs: f.structuredContent.id !== id };
const list = await call("sandbox_list", {});
out.listed = list.structuredContent.sandboxes.map((s) => s.id).filter((s) => s === id || s === f.structuredContent.id).length;

const missing = await call("read_file", { sandboxId: id, path: "/nope" });
out.missing = { isError: !!missing.isError, text: missing.content[0].text };

const del = await call("sandbox_delete", { sandboxId: id });
out.deleted = del.structuredContent;
await call("sandbox_delete", { sandboxId: f.structuredContent.id });
const gone = await call("exec", { sandboxId: id, script: "true" });
out.gone = { isError: !!gone.isError, text: gone.content[0].text };
out.ping = await client.ping();

await client.close();
console.log(JSON.stringify(out));
