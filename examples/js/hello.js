// A WASI 0.2 command component in JavaScript (built by componentize-js): exports wasi:cli/run.
export const run = {
  run() {
    const words = ["Hello", "from", "JavaScript", "in", "WebAssembly!"];
    console.log(words.join(" "));
    console.log(`sum of 1..10 = ${Array.from({ length: 10 }, (_, i) => i + 1).reduce((a, b) => a + b)}`);
  },
};
