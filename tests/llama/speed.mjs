// Speed and memory of a GGUF model in llama.cpp itself (node-llama-cpp's prebuilt CPU build), with
// llama.cpp's own defaults (f16 KV cache), as a user running the file would see them.
//   node speed.mjs MODEL.gguf [--threads N] [--prompt-tokens N] [--decode-tokens N] [--repeats N]
// Prints one JSON line: prompt processing (a prompt of --prompt-tokens tokens evaluated at once)
// and decoding (--decode-tokens greedy tokens after it, one at a time) in tokens/s, the best of
// --repeats runs each, and the process's peak resident memory before and after the model ran
// (VmHWM: mapped weights count once they are read, as they do on a phone).
import {readFileSync, statSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function options(argv) {
  const o = {threads: 2, promptTokens: 256, decodeTokens: 64, repeats: 3};
  const names = {"--threads": "threads", "--prompt-tokens": "promptTokens", "--decode-tokens": "decodeTokens",
                 "--repeats": "repeats"};
  for (let i = 1; i < argv.length; i += 2) {
    const key = names[argv[i]];
    const value = Number(argv[i + 1]);
    if (!key || !Number.isInteger(value) || value < 1) throw new Error(`speed.mjs: bad option ${argv[i]} ${argv[i + 1]}`);
    o[key] = value;
  }
  if (!argv[0]) throw new Error("usage: node speed.mjs MODEL.gguf [--threads N] [--prompt-tokens N] ...");
  return {model: argv[0], ...o};
}

function peakRssMib() {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) / 1024 : null;
}

// A prompt of exactly n tokens: product text repeated, tokenized by the model's own vocabulary.
function promptOf(model, n) {
  const text = "Stainless steel kitchen scale with tare, 11 lb capacity, backlit display. Price is $19.99\n\n";
  let tokens = [];
  while (tokens.length < n) tokens = tokens.concat(model.tokenize(text));
  return tokens.slice(0, n);
}

const o = options(process.argv.slice(2));
const before = peakRssMib();
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: o.model});
const context = await model.createContext({
  contextSize: o.promptTokens + o.decodeTokens + 16,
  batchSize: o.promptTokens,
  threads: o.threads,
});
const sequence = context.getSequence();
const prompt = promptOf(model, o.promptTokens);
let promptBest = 0, decodeBest = 0;
for (let r = 0; r < o.repeats; ++r) {
  await sequence.clearHistory();
  let t0 = performance.now();
  await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1));
  promptBest = Math.max(promptBest, (prompt.length - 1) / ((performance.now() - t0) / 1000));
  // The prompt's last token starts decoding: each step evaluates one token and picks the next.
  let n = 0;
  t0 = performance.now();
  for await (const token of sequence.evaluate(prompt.slice(-1), {temperature: 0})) {
    void token;
    if (++n >= o.decodeTokens) break;
  }
  decodeBest = Math.max(decodeBest, n / ((performance.now() - t0) / 1000));
}
const result = {
  impl: "llama.cpp", model: o.model, file_mib: statSync(o.model).size / 2 ** 20, threads: o.threads,
  prompt_tokens: o.promptTokens - 1, prompt_tok_s: promptBest, decode_tokens: o.decodeTokens, decode_tok_s: decodeBest,
  peak_rss_mib: peakRssMib(), rss_before_model_mib: before,
};
console.log(JSON.stringify(result));
await context.dispose();
await model.dispose();
process.exit(0);
