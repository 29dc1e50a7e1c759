// Speed and memory of a GGUF model in llama.cpp itself (node-llama-cpp's prebuilt CPU build), with
// llama.cpp's own defaults (f16 KV cache), as a user running the file would see them.
//   node speed.mjs MODEL.gguf [--threads N[,N...]] [--prompt-tokens N] [--decode-tokens N] [--repeats N]
// Prints one JSON line: prompt processing (a prompt of --prompt-tokens tokens evaluated at once)
// and decoding (--decode-tokens greedy tokens after it, one at a time) in tokens/s, the best of
// --repeats runs and of the thread counts given, and the process's peak resident memory before
// and after the model ran (VmHWM: mapped weights count once they are read, as they do on a phone).
// The speeds are llama.cpp's own timer (llama_perf_context, what llama-cli and llama-bench print),
// so the binding's cost per call is not charged to llama.cpp; the wall-clock rates seen through
// the binding come beside them (wall_*), and the thread count that gave each best figure.
import {readFileSync, statSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function options(argv) {
  const o = {threads: [2], promptTokens: 256, decodeTokens: 64, repeats: 3};
  const names = {"--threads": "threads", "--prompt-tokens": "promptTokens", "--decode-tokens": "decodeTokens",
                 "--repeats": "repeats"};
  for (let i = 1; i < argv.length; i += 2) {
    const key = names[argv[i]];
    const values = String(argv[i + 1]).split(",").map(Number);
    if (!key || !values.every((v) => Number.isInteger(v) && v >= 1) || (key !== "threads" && values.length !== 1))
      throw new Error(`speed.mjs: bad option ${argv[i]} ${argv[i + 1]}`);
    o[key] = key === "threads" ? values : values[0];
  }
  if (!argv[0]) throw new Error("usage: node speed.mjs MODEL.gguf [--threads N[,N...]] [--prompt-tokens N] ...");
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

// llama.cpp's timer lines, e.g. "prompt eval time = 44.08 ms / 255 tokens" and
// "eval time = 930.97 ms / 64 runs": tokens per second of each kind since the last reset.
function timerRates(lines) {
  const rate = (re) => {
    const m = lines.map((l) => re.exec(l)).find(Boolean);
    return m ? Number(m[2]) / (Number(m[1]) / 1000) : 0;
  };
  return {prompt: rate(/prompt eval time =\s*([\d.]+) ms \/\s*(\d+) tokens/),
          decode: rate(/:\s+eval time =\s*([\d.]+) ms \/\s*(\d+) runs/)};
}

// One thread count: the best of the repeats, by llama.cpp's timer and by the wall clock.
async function measure(model, prompt, threads, o, timerLines) {
  const context = await model.createContext({
    contextSize: o.promptTokens + o.decodeTokens + 16, batchSize: o.promptTokens, threads, performanceTracking: true,
  });
  const sequence = context.getSequence();
  const best = {prompt: 0, decode: 0, wallPrompt: 0, wallDecode: 0};
  for (let r = 0; r < o.repeats; ++r) {
    await sequence.clearHistory();
    await context.printTimings();  // prints and resets the timer
    timerLines.length = 0;
    let t0 = performance.now();
    await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1));
    best.wallPrompt = Math.max(best.wallPrompt, (prompt.length - 1) / ((performance.now() - t0) / 1000));
    // The prompt's last token starts decoding: each step evaluates one token and picks the next.
    let n = 0;
    t0 = performance.now();
    for await (const token of sequence.evaluate(prompt.slice(-1), {temperature: 0})) {
      void token;
      if (++n >= o.decodeTokens) break;
    }
    best.wallDecode = Math.max(best.wallDecode, n / ((performance.now() - t0) / 1000));
    await context.printTimings();
    const timed = timerRates(timerLines);
    if (!timed.prompt || !timed.decode) throw new Error(`speed.mjs: llama.cpp printed no timings: ${timerLines.join(" | ")}`);
    best.prompt = Math.max(best.prompt, timed.prompt);
    best.decode = Math.max(best.decode, timed.decode);
  }
  await context.dispose();
  return best;
}

const o = options(process.argv.slice(2));
const before = peakRssMib();
const timerLines = [];
// Info level for the timer's lines; llama.cpp's errors still reach stderr, the rest is dropped.
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.info, logger: (level, message) => {
  if (/llama_perf_context_print/.test(message)) timerLines.push(message);
  else if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) console.error(message);
}});
const model = await llama.loadModel({modelPath: o.model});
const prompt = promptOf(model, o.promptTokens);
const runs = [];
for (const threads of o.threads) runs.push({threads, ...(await measure(model, prompt, threads, o, timerLines))});
const top = (key) => runs.reduce((a, b) => (b[key] > a[key] ? b : a));
const result = {
  impl: "llama.cpp", model: o.model, file_mib: statSync(o.model).size / 2 ** 20,
  prompt_tokens: o.promptTokens - 1, prompt_tok_s: top("prompt").prompt, prompt_threads: top("prompt").threads,
  decode_tokens: o.decodeTokens, decode_tok_s: top("decode").decode, decode_threads: top("decode").threads,
  wall_prompt_tok_s: top("wallPrompt").wallPrompt, wall_decode_tok_s: top("wallDecode").wallDecode,
  threads_tried: o.threads, peak_rss_mib: peakRssMib(), rss_before_model_mib: before,
};
console.log(JSON.stringify(result));
await model.dispose();
process.exit(0);
