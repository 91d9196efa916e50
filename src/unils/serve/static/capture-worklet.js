// Collects microphone samples (channel 0) into blocks of `blockSize` and posts them to the page.
class UnilsCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.blockSize = (options.processorOptions && options.processorOptions.blockSize) || 960;
    this.buffer = new Float32Array(this.blockSize);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const samples = input[0];
      let offset = 0;
      while (offset < samples.length) {
        const n = Math.min(samples.length - offset, this.blockSize - this.filled);
        this.buffer.set(samples.subarray(offset, offset + n), this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === this.blockSize) {
          this.port.postMessage(this.buffer, [this.buffer.buffer]);
          this.buffer = new Float32Array(this.blockSize);
          this.filled = 0;
        }
      }
    }
    return true; // keep running while the page captures
  }
}

registerProcessor('unils-capture', UnilsCapture);
