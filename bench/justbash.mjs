// Drives the just-bash interpreter in process for the comparison benchmarks.
// Reads one JSON job on stdin: {"corpus": dir|null, "corpusBase": "/home/user/corpus",
// "cases": [{"name", "script", "n", "fresh"?}]} and prints {"<name>": [ms, ...], ...}.
// fresh: time `new Bash()` + the first exec (time-to-interactive) instead of a reused instance.
import { Bash } from "just-bash";
import fs from "node:fs";
import path from "node:path";

function loadCorpus(dir, base) {
  const files = {};
  const walk = (d, rel) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const r = rel + "/" + e.name;
      if (e.isDirectory()) walk(p, r);
      else if (e.isFile()) files[base + r] = fs.readFileSync(p, "utf8");
    }
  };
  walk(dir, "");
  return files;
}

const job = JSON.parse(fs.readFileSync(0, "utf8"));
const files = job.corpus ? loadCorpus(job.corpus, job.corpusBase || "/home/user/corpus") : {};
files["/home/user/r.txt"] = "hello\n";
const bash = new Bash({ files, cwd: "/home/user" });
const out = {};
for (const c of job.cases) {
  const times = [];
  for (let i = 0; i < c.n; i++) {
    const t0 = process.hrtime.bigint();
    let r;
    if (c.fresh) {
      const b = new Bash({ cwd: "/home/user" });
      r = await b.exec(c.script);
    } else {
      r = await bash.exec(c.script);
    }
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (i === 0) out[c.name + ".stdout"] = r.stdout.slice(0, 200);
  }
  out[c.name] = times;
}
process.stdout.write(JSON.stringify(out));
