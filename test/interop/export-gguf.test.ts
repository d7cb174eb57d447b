import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gguf as parseIndependently } from '@huggingface/gguf';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { exportGguf, ggufToHfName, hfToGgufName, permuteQKRows } from '../../src/converters/export-gguf.js';
import { TpkModel } from '../../src/converters/export-common.js';
import { ggufTokenizer } from '../../src/converters/export-gguf-tokenizer.js';
import { GgufFile, GgufValueType } from '../../src/formats/gguf.js';
import { toFloat32 } from '../../src/formats/dtype.js';
import { decodeTQ, dequantizeTQ } from '../../src/formats/ternary.js';
import { fixtureDir } from '../support/fixtures.js';
import { convertedFixture, f16round, scratchDir, writeHandTpk } from '../support/interop-models.js';

type Typed = Record<string, { value: unknown; type: number; subType?: number }>;

/** Block sizes straight from formats.md §1.1 / §2.5 (not from the code under test). */
const BYTES_PER_ELEMENT_BLOCK: Record<number, [number, number]> = { 0: [1, 4], 1: [1, 2], 34: [256, 54], 35: [256, 66] };
const align32 = (n: number) => Math.ceil(n / 32) * 32;

async function independentParse(file: string) {
  const parsed = await parseIndependently(file, { allowLocalFile: true, typedMetadata: true });
  return { ...parsed, typed: parsed.typedMetadata as unknown as Typed };
}

function assertBackToBack(tensorInfos: { shape: bigint[]; dtype: number; offset: bigint; name: string }[]): void {
  let expected = 0;
  for (const t of tensorInfos) {
    assert.equal(Number(t.offset), expected, `${t.name} offset`);
    const [block, bytes] = BYTES_PER_ELEMENT_BLOCK[t.dtype]!;
    const n = t.shape.reduce((a, b) => a * Number(b), 1);
    expected += align32((n / block) * bytes);
  }
}

function assertKey(typed: Typed, key: string, type: GgufValueType, value?: unknown): void {
  assert.ok(typed[key], `missing ${key}`);
  assert.equal(typed[key]!.type, type, `${key} type`);
  if (value !== undefined) assert.deepEqual(typed[key]!.value, value, key);
}

/** Codes of an exported tensor in HF row order, and the GGUF dequantized values in HF order. */
function ggufTernary(file: GgufFile, name: string, type: 'tq1_0' | 'tq2_0', rows: number, unpermuteHeads?: number) {
  const info = file.get(name)!;
  const count = info.dims.reduce((a, b) => a * b, 1);
  const bytes = file.readBytes(name);
  let { codes, blockScales } = decodeTQ(type, bytes, count);
  let values = dequantizeTQ(type, bytes, count);
  if (unpermuteHeads !== undefined) {
    codes = permuteQKRows(codes, rows, count / rows, unpermuteHeads, false);
    values = permuteQKRows(values, rows, count / rows, unpermuteHeads, false);
  }
  return { codes, blockScales, values };
}

describe('interop/export-gguf', function () {
  this.timeout(120000);

  for (const type of ['tq1_0', 'tq2_0'] as const) {
    it(`llama-256 → ${type}: every ternary tensor is ${type.toUpperCase()}, keys typed as llama.cpp checks, data exact`, async () => {
      const tpkPath = await convertedFixture('llama-256');
      const out = path.join(scratchDir(), `llama-256-${type}.gguf`);
      const summary = exportGguf({ input: tpkPath, output: out, type, force: true });
      assert.equal(summary.arch, 'llama');
      assert.deepEqual(summary.ternary.fallback, []);
      assert.equal(summary.ternary.tensors, 14);
      assert.equal(summary.ternary.weightsStillTernary, summary.ternary.weights);

      const { typed, tensorInfos } = await independentParse(out);
      const tq = type === 'tq1_0' ? 34 : 35;
      assertKey(typed, 'general.architecture', GgufValueType.STRING, 'llama');
      assertKey(typed, 'general.file_type', GgufValueType.UINT32, type === 'tq1_0' ? 36 : 37);
      assertKey(typed, 'general.quantization_version', GgufValueType.UINT32, 2);
      assertKey(typed, 'llama.context_length', GgufValueType.UINT32, 512);
      assertKey(typed, 'llama.embedding_length', GgufValueType.UINT32, 256);
      assertKey(typed, 'llama.block_count', GgufValueType.UINT32, 2);
      assertKey(typed, 'llama.feed_forward_length', GgufValueType.UINT32, 768);
      assertKey(typed, 'llama.attention.head_count', GgufValueType.UINT32, 4);
      assertKey(typed, 'llama.attention.head_count_kv', GgufValueType.UINT32, 2);
      assertKey(typed, 'llama.rope.dimension_count', GgufValueType.UINT32, 64);
      assertKey(typed, 'llama.attention.layer_norm_rms_epsilon', GgufValueType.FLOAT32, Math.fround(1e-5));
      assertKey(typed, 'llama.rope.freq_base', GgufValueType.FLOAT32, 10000);
      assertKey(typed, 'tokenizer.ggml.model', GgufValueType.STRING, 'llama');
      assertKey(typed, 'tokenizer.ggml.bos_token_id', GgufValueType.UINT32, 1);
      assertKey(typed, 'tokenizer.ggml.eos_token_id', GgufValueType.UINT32, 2);
      assertKey(typed, 'tokenizer.ggml.add_bos_token', GgufValueType.BOOL, true);
      assert.equal(typed['tokenizer.ggml.tokens']!.subType, GgufValueType.STRING);
      assert.equal(typed['tokenizer.ggml.scores']!.subType, GgufValueType.FLOAT32);
      assert.equal(typed['tokenizer.ggml.token_type']!.subType, GgufValueType.INT32);
      const tokens = typed['tokenizer.ggml.tokens']!.value as string[];
      const vocab = JSON.parse(readFileSync(path.join(fixtureDir('llama-256'), 'tokenizer.json'), 'utf8')).model.vocab as Record<string, number>;
      assert.equal(tokens.length, 2048);
      for (const [text, id] of Object.entries(vocab)) assert.equal(tokens[id], text);
      assert.deepEqual((typed['tokenizer.ggml.token_type']!.value as number[]).slice(0, 4), [2, 3, 3, 1]); // <unk>, two specials, "\n"
      assert.ok(!('general.alignment' in typed), 'default alignment: no key, as gguf-py');

      const byName = new Map(tensorInfos.map((t) => [t.name, t]));
      assert.equal(tensorInfos.length, 2 + 1 + 2 * 9);
      assert.deepEqual(byName.get('token_embd.weight')!.shape.map(Number), [256, 2048]);
      assert.equal(byName.get('token_embd.weight')!.dtype, 1);
      assert.equal(byName.get('output.weight')!.dtype, 1);
      assert.equal(byName.get('output_norm.weight')!.dtype, 0);
      for (const l of [0, 1]) {
        for (const [n, dims] of [['attn_q', [256, 256]], ['attn_k', [256, 128]], ['attn_v', [256, 128]], ['attn_output', [256, 256]], ['ffn_gate', [256, 768]], ['ffn_up', [256, 768]], ['ffn_down', [768, 256]]] as const) {
          const t = byName.get(`blk.${l}.${n}.weight`)!;
          assert.equal(t.dtype, tq, t.name);
          assert.deepEqual(t.shape.map(Number), dims, t.name);
        }
        for (const n of ['attn_norm', 'ffn_norm']) assert.equal(byName.get(`blk.${l}.${n}.weight`)!.dtype, 0);
      }
      assertBackToBack(tensorInfos);

      // GGUF → our reader → dequantize vs the .tpk: codes identical (after undoing the Q/K
      // permutation); values = code · fp16(γ), the only rounding being d's fp16 storage.
      const model = TpkModel.open(tpkPath);
      const file = GgufFile.open(out);
      try {
        let maxRel = 0;
        for (const l of [0, 1]) {
          for (const [g, hf, heads] of [['attn_q', 'self_attn.q_proj', 4], ['attn_k', 'self_attn.k_proj', 2], ['attn_v', 'self_attn.v_proj', undefined], ['ffn_down', 'mlp.down_proj', undefined]] as const) {
            const t = model.ternary(`model.layers.${l}.${hf}.weight`);
            const got = ggufTernary(file, `blk.${l}.${g}.weight`, type, t.rows, heads);
            assert.deepEqual(got.codes, t.codes, `${g} codes`);
            const d = f16round(t.scales[0]!);
            for (let i = 0; i < t.codes.length; i++) assert.equal(got.values[i], t.codes[i]! * d);
            assert.ok(got.blockScales.every((s) => s === d));
            maxRel = Math.max(maxRel, Math.abs(d - t.scales[0]!) / t.scales[0]!);
          }
        }
        assert.ok(maxRel <= 2 ** -11, `fp16 rounding of gamma ${maxRel}`);
        // the Q permutation is a real reordering: HF row 1 becomes GGUF row 2 (head dim 64)
        const q = model.ternary('model.layers.0.self_attn.q_proj.weight');
        const raw = decodeTQ(type, file.readBytes('blk.0.attn_q.weight'), q.codes.length).codes;
        assert.deepEqual(raw.subarray(2 * 256, 3 * 256), q.codes.subarray(256, 512));
        assert.deepEqual(raw.subarray(1 * 256, 2 * 256), q.codes.subarray(32 * 256, 33 * 256));
        // F16 embedding and F32 norms equal the .tpk values rounded to their GGUF type
        const emb = model.float32('model.embed_tokens.weight');
        const embGguf = toFloat32(file.readBytes('token_embd.weight'), 'F16');
        for (let i = 0; i < emb.length; i++) assert.equal(embGguf[i], f16round(emb[i]!));
        assert.deepEqual(toFloat32(file.readBytes('output_norm.weight'), 'F32'), model.float32('model.norm.weight'));
      } finally {
        file.close();
        model.close();
      }
    });
  }

  it('per-channel scales: each row keeps its own d through the Q/K permutation; group:128 scales fall back to F16', async () => {
    const tpkPath = path.join(scratchDir(), 'llama-256-channel.tpk');
    await convertCheckpoint({ input: fixtureDir('llama-256'), output: tpkPath, scale: { kind: 'channel' }, force: true });
    const out = path.join(scratchDir(), 'llama-256-channel.gguf');
    assert.deepEqual(exportGguf({ input: tpkPath, output: out, type: 'tq2_0', force: true }).ternary.fallback, []);
    const model = TpkModel.open(tpkPath);
    const file = GgufFile.open(out);
    try {
      for (const [g, hf, heads] of [['attn_q', 'self_attn.q_proj', 4], ['attn_k', 'self_attn.k_proj', 2], ['ffn_up', 'mlp.up_proj', undefined]] as const) {
        const t = model.ternary(`model.layers.1.${hf}.weight`);
        assert.equal(t.scale.granularity, 'channel');
        const got = ggufTernary(file, `blk.1.${g}.weight`, 'tq2_0', t.rows, heads);
        assert.deepEqual(got.codes, t.codes);
        for (let i = 0; i < t.codes.length; i++) assert.equal(got.values[i], t.codes[i]! * f16round(t.scales[Math.floor(i / t.cols)]!));
      }
    } finally {
      file.close();
      model.close();
    }
    const grouped = path.join(scratchDir(), 'llama-256-g128.tpk');
    await convertCheckpoint({ input: fixtureDir('llama-256'), output: grouped, scale: { kind: 'group', size: 128 }, force: true });
    const summary = exportGguf({ input: grouped, output: path.join(scratchDir(), 'g128.gguf'), force: true });
    assert.equal(summary.ternary.fallback.length, 14);
    assert.ok(summary.warnings.some((w) => /scale groups of 128 do not cover whole 256-blocks/.test(w)));
  });

  it('TQ blocks reproduce the formats.md §1.5 vectors end to end (t[k] = (floor(5k/3) mod 3) − 1, γ = 0.5)', async () => {
    const codes = Int8Array.from({ length: 256 }, (_, k) => (Math.floor((5 * k) / 3) % 3) - 1);
    const tpk = path.join(scratchDir(), 'vector.tpk');
    const config = { ...JSON.parse(readFileSync(path.join(fixtureDir('llama-256'), 'config.json'), 'utf8')), num_hidden_layers: 1 };
    writeHandTpk(tpk, 'llama-256', [
      { name: 'model.embed_tokens.weight', shape: [2048, 256], values: new Float32Array(2048 * 256) },
      { name: 'model.layers.0.self_attn.v_proj.weight', shape: [1, 256], codes, scales: Float32Array.of(0.5) },
    ], config);
    const expected = {
      tq2_0: { head: '58 85 68 06 60 16 a1 1a', tailAt: 64, tail: '00 38', sha: '8f3fa6c5d80c9c61' },
      tq1_0: { head: '46 7b 50 ca 18 d3 70 ee', tailAt: 48, tail: '85 b8 a2 10 00 38', sha: '5835ac1dc9948789' },
    } as const;
    for (const type of ['tq1_0', 'tq2_0'] as const) {
      const out = path.join(scratchDir(), `vector-${type}.gguf`);
      exportGguf({ input: tpk, output: out, type, force: true });
      const file = GgufFile.open(out);
      const block = file.readBytes('blk.0.attn_v.weight');
      file.close();
      const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
      assert.equal(hex(block.subarray(0, 8)), expected[type].head, type);
      assert.equal(hex(block.subarray(expected[type].tailAt)), expected[type].tail, type);
      assert.equal(createHash('sha256').update(block).digest('hex').slice(0, 16), expected[type].sha, type);
    }
  });

  it('tinystories-656K: rows of 128/384 fall back to F16 with a warning that lists them; none stays ternary', async () => {
    const tpkPath = await convertedFixture('tinystories-656K');
    const out = path.join(scratchDir(), 'tinystories.gguf');
    const summary = exportGguf({ input: tpkPath, output: out, type: 'tq1_0', force: true });
    assert.equal(summary.ternary.tensors, 14);
    assert.equal(summary.ternary.fallback.length, 14);
    assert.equal(summary.ternary.weightsStillTernary, 0);
    assert.equal(summary.ternary.weights, 2 * (4 * 128 * 128 - 2 * 64 * 128 + 3 * 128 * 384));
    const warning = summary.warnings.find((w) => w.includes('written as F16'))!;
    assert.ok(warning, summary.warnings.join('\n'));
    for (const name of summary.ternary.fallback) assert.ok(warning.includes(name), name);
    assert.match(warning, /row length 128 is not a multiple of 256/);

    const { typed, tensorInfos } = await independentParse(out);
    assertKey(typed, 'general.file_type', GgufValueType.UINT32, 1); // MOSTLY_F16: nothing quantized
    assert.ok(!('general.quantization_version' in typed));
    assert.ok(tensorInfos.every((t) => t.dtype === 0 || t.dtype === 1));
    // tied embedding stored only as lm_head.weight: exported as token_embd, no output tensor
    assert.ok(tensorInfos.some((t) => t.name === 'token_embd.weight'));
    assert.ok(!tensorInfos.some((t) => t.name === 'output.weight'));
    assertBackToBack(tensorInfos);

    const model = TpkModel.open(tpkPath);
    const file = GgufFile.open(out);
    const t = model.ternary('model.layers.1.mlp.down_proj.weight');
    const f16 = toFloat32(file.readBytes('blk.1.ffn_down.weight'), 'F16');
    for (let i = 0; i < t.codes.length; i++) assert.equal(f16[i], f16round(t.codes[i]! * t.scales[0]!));
    file.close();
    model.close();
  });

  it('bitnet-tiny → arch bitnet: no output tensor, sub-norms, no Q/K permutation, bitnet.* keys', async () => {
    const tpkPath = await convertedFixture('bitnet-tiny', 't2');
    const out = path.join(scratchDir(), 'bitnet.gguf');
    const summary = exportGguf({ input: tpkPath, output: out, type: 'tq2_0', force: true });
    assert.equal(summary.arch, 'bitnet');
    assert.deepEqual(summary.ternary.fallback, []);
    assert.ok(summary.warnings.some((w) => /relu2/.test(w)));
    const { typed, tensorInfos } = await independentParse(out);
    assertKey(typed, 'general.architecture', GgufValueType.STRING, 'bitnet');
    assertKey(typed, 'bitnet.attention.layer_norm_rms_epsilon', GgufValueType.FLOAT32, Math.fround(1e-5));
    assertKey(typed, 'bitnet.rope.freq_base', GgufValueType.FLOAT32, 500000);
    assertKey(typed, 'bitnet.attention.head_count_kv', GgufValueType.UINT32, 4);
    assertKey(typed, 'bitnet.rope.scaling.type', GgufValueType.STRING, 'linear');
    const names = new Set(tensorInfos.map((t) => t.name));
    assert.ok(!names.has('output.weight'));
    assert.deepEqual(tensorInfos.find((t) => t.name === 'blk.0.ffn_sub_norm.weight')!.shape.map(Number), [768]);
    assert.deepEqual(tensorInfos.find((t) => t.name === 'blk.1.attn_sub_norm.weight')!.shape.map(Number), [256]);
    assert.equal(tensorInfos.length, 1 + 1 + 2 * 11);
    assertBackToBack(tensorInfos);
    const model = TpkModel.open(tpkPath);
    const file = GgufFile.open(out);
    const q = model.ternary('model.layers.0.self_attn.q_proj.weight');
    assert.deepEqual(ggufTernary(file, 'blk.0.attn_q.weight', 'tq2_0', q.rows).codes, q.codes, 'bitnet: Q rows are not permuted');
    file.close();
    model.close();
  });

  it('tensor names follow llama.cpp\'s tensor_mapping.py both ways; what it has no name for is refused', () => {
    // pairs written from llama.cpp's gguf-py/gguf/tensor_mapping.py (MODEL_TENSOR → HF names)
    const pairs: [string, string][] = [
      ['model.embed_tokens.weight', 'token_embd.weight'], ['model.norm.weight', 'output_norm.weight'], ['lm_head.weight', 'output.weight'],
      ['model.layers.7.input_layernorm.weight', 'blk.7.attn_norm.weight'], ['model.layers.7.post_attention_layernorm.weight', 'blk.7.ffn_norm.weight'],
      ['model.layers.7.self_attn.q_proj.weight', 'blk.7.attn_q.weight'], ['model.layers.7.self_attn.k_proj.bias', 'blk.7.attn_k.bias'],
      ['model.layers.7.self_attn.v_proj.weight', 'blk.7.attn_v.weight'], ['model.layers.7.self_attn.o_proj.weight', 'blk.7.attn_output.weight'],
      ['model.layers.10.mlp.gate_proj.weight', 'blk.10.ffn_gate.weight'], ['model.layers.10.mlp.up_proj.weight', 'blk.10.ffn_up.weight'],
      ['model.layers.10.mlp.down_proj.weight', 'blk.10.ffn_down.weight'],
      ['model.layers.0.self_attn.attn_sub_norm.weight', 'blk.0.attn_sub_norm.weight'], ['model.layers.0.mlp.ffn_sub_norm.weight', 'blk.0.ffn_sub_norm.weight'],
    ];
    for (const [hf, g] of pairs) {
      assert.equal(hfToGgufName(hf), g, hf);
      assert.equal(ggufToHfName(g), hf, g);
    }
    // 1bitLLM's sub-norm names export to the same GGUF names (and import as 2B4T's)
    assert.equal(hfToGgufName('model.layers.2.self_attn.inner_attn_ln.weight'), 'blk.2.attn_sub_norm.weight');
    assert.equal(hfToGgufName('model.layers.2.mlp.ffn_layernorm.weight'), 'blk.2.ffn_sub_norm.weight');
    assert.equal(hfToGgufName('model.layers.2.self_attn.rotary_emb.inv_freq'), null);
    for (const bad of ['model.layers.0.mlp.up_proj.bias', 'model.layers.0.input_layernorm.bias', 'model.layers.x.mlp.up_proj.weight', 'transformer.wte.weight']) {
      assert.throws(() => hfToGgufName(bad), new RegExp(`no llama.cpp tensor name for ${bad.replace(/\./g, '\\.')}$`), bad);
    }
    for (const bad of ['blk.0.ffn_up.bias', 'blk.0.attn_norm.bias', 'blk.0.ssm_in.weight', 'rope_freqs.weight']) {
      assert.throws(() => ggufToHfName(bad), /no Hugging Face name/, bad);
    }
  });

  it('GPT-2 byte-level BPE tokenizers get model gpt2, merges and the pre-tokenizer name', () => {
    const llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    const tokenizer = {
      added_tokens: [{ id: 5, content: '<|begin_of_text|>', special: true }, { id: 6, content: '<|end_of_text|>', special: true }],
      normalizer: null,
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: llama3Regex }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
      post_processor: null,
      decoder: { type: 'ByteLevel' },
      model: { type: 'BPE', byte_fallback: false, vocab: { 'Ġ': 0, a: 1, b: 2, 'Ġa': 3, 'Ġab': 4 }, merges: [['Ġ', 'a'], 'Ġa b'] },
    };
    const tok = ggufTokenizer({ 'tokenizer.json': JSON.stringify(tokenizer), 'tokenizer_config.json': JSON.stringify({ bos_token: '<|begin_of_text|>', chat_template: '{{ x }}' }) }, { eos_token_id: [6, 5] }, 8);
    const kv = new Map(tok.kv);
    assert.equal(tok.model, 'gpt2');
    assert.equal(tok.pre, 'llama-bpe');
    assert.deepEqual(kv.get('tokenizer.ggml.merges'), { type: GgufValueType.ARRAY, elemType: GgufValueType.STRING, value: ['Ġ a', 'Ġa b'] });
    assert.deepEqual(kv.get('tokenizer.ggml.tokens')!.value, ['Ġ', 'a', 'b', 'Ġa', 'Ġab', '<|begin_of_text|>', '<|end_of_text|>', '[PAD7]']);
    assert.deepEqual(kv.get('tokenizer.ggml.token_type')!.value, [1, 1, 1, 1, 1, 3, 3, 5]);
    assert.equal(kv.get('tokenizer.ggml.bos_token_id')!.value, 5);
    assert.equal(kv.get('tokenizer.ggml.eos_token_id')!.value, 6);
    assert.equal(kv.get('tokenizer.chat_template')!.value, '{{ x }}');
    assert.ok(!kv.has('tokenizer.ggml.scores'));
    // an unknown split regex is reported, not guessed
    tokenizer.pre_tokenizer.pretokenizers[0]!.pattern = { Regex: '\\w+' };
    const odd = ggufTokenizer({ 'tokenizer.json': JSON.stringify(tokenizer) }, {}, 8);
    assert.equal(odd.pre, 'default');
    assert.ok(odd.warnings.some((w) => /unrecognised byte-level pre-tokenizer/.test(w)));
  });

  it('SentencePiece-style scores follow the merge ranks (earlier merge = higher score)', () => {
    const tok = ggufTokenizer({ 'tokenizer.json': readFileSync(path.join(fixtureDir('llama-256'), 'tokenizer.json'), 'utf8') }, {}, 2048);
    const kv = new Map(tok.kv);
    const tokens = kv.get('tokenizer.ggml.tokens')!.value as string[];
    const scores = kv.get('tokenizer.ggml.scores')!.value as number[];
    const merges = JSON.parse(readFileSync(path.join(fixtureDir('llama-256'), 'tokenizer.json'), 'utf8')).model.merges as string[];
    const first = tokens.indexOf(merges[0]!.replace(' ', ''));
    const second = tokens.indexOf(merges[1]!.replace(' ', ''));
    assert.equal(scores[first], 0);
    assert.equal(scores[second], -1);
    assert.ok(scores[tokens.indexOf('a')]! < -(merges.length - 1), 'single characters rank below every merge');
    assert.equal(kv.get('tokenizer.ggml.add_space_prefix')!.value, true);
  });
});
