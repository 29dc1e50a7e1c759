// Prices one product with a pricer GGUF export in llama.cpp, as an app on a phone would: here
// through llama.cpp's node binding (node-llama-cpp); the Android and iOS bindings expose the same
// calls (tokenize, evaluate, the next-token probabilities).
//   npm install node-llama-cpp@3.22.1
//   node price.mjs MODEL.gguf "product text"
// Prints one JSON object: {"price": ..., "low": ..., "high": ..., "number_mass": ...}.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [modelPath, text] = process.argv.slice(2);
if (!modelPath || !text) {
  console.error('usage: node price.mjs MODEL.gguf "product text"');
  process.exit(2);
}
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath});
const context = await model.createContext({contextSize: 512});
const sequence = context.getSequence();

// The prompt the model was trained on, its answer cue last. (pricer cuts a long product text to
// 110 tokens before this template; a phone app should too.)
const prompt = `What does this cost to the nearest dollar?\n\n${text}\n\nPrice is $`;
const tokens = model.tokenize(prompt);
if (model.tokens.bos != null) tokens.unshift(model.tokens.bos);

// One forward pass; the distribution of the token after "Price is $".
const items = tokens.map((t, i) => (i === tokens.length - 1 ? [t, {generateNext: {probabilities: true}}] : t));
const evaluated = await sequence.controlledEvaluate(items);
const probabilities = evaluated[evaluated.length - 1].next.probabilities;

// The whole-dollar amount is one token 0-999: the distribution over those tokens is a distribution
// over prices. Its median is the estimate with the least expected absolute error; reading the single
// likeliest token (greedy decoding) throws away the rest of the distribution and prices worse.
const prices = [];
let mass = 0;
for (const [token, p] of probabilities) {
  const piece = model.detokenize([token]);
  if (/^(0|[1-9][0-9]{0,2})$/.test(piece)) {
    prices.push([Number(piece), p]);
    mass += p;
  }
}
if (mass <= 0) {
  console.error(`${modelPath}: the model puts no probability on a number after the prompt`);
  process.exit(1);
}
prices.sort((a, b) => a[0] - b[0]);
const quantile = (q) => {
  let cumulative = 0;
  for (const [value, p] of prices) {
    cumulative += p / mass;
    if (cumulative >= q) return value;
  }
  return prices[prices.length - 1][0];
};
console.log(JSON.stringify({price: quantile(0.5), low: quantile(0.1), high: quantile(0.9), number_mass: mass}));
process.exit(0);
