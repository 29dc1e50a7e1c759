// Runs a GGUF model in llama.cpp itself (node-llama-cpp's prebuilt CPU build) on token ids and
// prints what it predicts, for tests to hold against pricer's own reading of the same file.
//   node next_token.mjs REQUEST.json
// REQUEST: {"model": path, "lora": path (optional), "prompts": [[id, ...], ...], "greedy": N,
//           "out": path}
// The file `out` gets one JSON object: {"results": [{"logprobs": [...], "greedy": [id, ...]}, ...]} where
// logprobs[t] is the natural log of the probability of token t after the whole prompt (null
// where the probability is 0) and greedy is the N tokens that follow, each the likeliest.
import {readFileSync, writeFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: request.model});
const context = await model.createContext({
  contextSize: request.context ?? 512,
  threads: request.threads ?? 1,
  // Attention as pricer computes it: f32 keys and values (llama.cpp's default cache is f16) and no
  // flash attention (its CPU kernel works in f16).
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
  lora: request.lora ? {adapters: [{filePath: request.lora}]} : undefined,
});
const sequence = context.getSequence();

// Evaluates `tokens` after what the sequence holds; the next-token distribution after the last.
async function next(tokens) {
  const items = tokens.map((t, i) => (i === tokens.length - 1 ? [t, {generateNext: {probabilities: true}}] : t));
  const out = await sequence.controlledEvaluate(items);
  return out[out.length - 1].next.probabilities;
}

function argmax(probabilities) {
  let best = -1, bestP = -1;
  for (const [t, p] of probabilities) if (p > bestP) [best, bestP] = [t, p];
  return best;
}

const results = [];
for (const prompt of request.prompts) {
  await sequence.clearHistory();
  let probabilities = await next(prompt);
  const logprobs = new Array(probabilities.size).fill(null);
  for (const [t, p] of probabilities) logprobs[t] = p > 0 ? Math.log(p) : null;
  const greedy = [];
  for (let i = 0; i < (request.greedy ?? 0); ++i) {
    greedy.push(argmax(probabilities));
    probabilities = await next([greedy[greedy.length - 1]]);
  }
  results.push({logprobs, greedy});
}
writeFileSync(request.out, JSON.stringify({results}) + "\n");
await context.dispose();
await model.dispose();
process.exit(0);
