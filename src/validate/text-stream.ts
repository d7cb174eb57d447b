/**
 * Turns a growing list of token ids into text deltas for streaming. Decoding token by token is
 * wrong twice over: a character can span several tokens (byte-level and byte-fallback pieces
 * decode to U+FFFD until the sequence is complete), and decoders drop or add spaces depending on
 * a token's neighbours. So, as Hugging Face's text-generation-inference does, each step decodes a
 * short window that starts a few tokens back, emits only what grew past the previous decode of the
 * same window, and holds text back while it ends in U+FFFD.
 */
export class TextStreamer {
  private readonly ids: number[];
  private prefixOffset: number;
  private readOffset: number;
  private emitted = '';

  /** `contextIds` (the prompt) are never emitted but give the first tokens their left context. */
  private readonly decode: (ids: number[]) => string;

  constructor(decode: (ids: number[]) => string, contextIds: number[] = [], lookBack = 5) {
    // Some tokenizers (@huggingface/tokenizers) refuse to decode an empty list.
    this.decode = (ids) => (ids.length === 0 ? '' : decode(ids));
    this.ids = [...contextIds];
    this.readOffset = this.ids.length;
    this.prefixOffset = Math.max(0, this.ids.length - lookBack);
  }

  /** Adds one generated id; returns the text that became final (possibly ''). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const now = this.decode(this.ids.slice(this.prefixOffset));
    if (now.length <= before.length || now.endsWith('\uFFFD')) return '';
    const delta = now.slice(before.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    this.emitted += delta;
    return delta;
  }

  /** At the end: whatever is still held back (an incomplete character stays as U+FFFD). */
  flush(): string {
    const before = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const now = this.decode(this.ids.slice(this.prefixOffset));
    this.readOffset = this.prefixOffset = this.ids.length;
    const delta = now.slice(before.length);
    this.emitted += delta;
    return delta;
  }

  /** Everything emitted so far. */
  get text(): string { return this.emitted; }
}
