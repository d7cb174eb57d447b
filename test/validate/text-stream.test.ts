import assert from 'node:assert/strict';
import { TextStreamer } from '../../src/validate/text-stream.js';

// A byte-level tokenizer stand-in: each id is one UTF-8 byte; decoding a cut character gives U+FFFD,
// and (like Metaspace) a leading space of the decoded text is dropped.
const byteDecode = (ids: number[]) => new TextDecoder().decode(Uint8Array.from(ids)).replace(/^ /, '');
const bytesOf = (s: string) => [...new TextEncoder().encode(s)];

describe('validate/text-stream', () => {
  it('streams multi-byte characters only once they are complete, and keeps spaces between tokens', () => {
    const prompt = bytesOf('Hi');
    const streamer = new TextStreamer(byteDecode, prompt);
    const deltas = bytesOf(' é 😀 ok').map((id) => streamer.push(id));
    deltas.push(streamer.flush());
    assert.equal(deltas.join(''), ' é 😀 ok');
    assert.ok(deltas.every((d) => !d.includes('\uFFFD')));
    // The 4 bytes of 😀 produce one delta, on the last byte.
    const emojiBytes = bytesOf('😀').length;
    const start = bytesOf(' é ').length;
    assert.deepEqual(deltas.slice(start, start + emojiBytes), ['', '', '', '😀']);
    assert.equal(streamer.text, ' é 😀 ok');
  });

  it('a character cut at the end comes out as U+FFFD on flush', () => {
    const streamer = new TextStreamer(byteDecode);
    for (const id of [0x61, 0xe2, 0x82]) streamer.push(id);
    assert.equal(streamer.flush(), '\uFFFD');
    assert.equal(streamer.text, 'a\uFFFD');
  });
});
