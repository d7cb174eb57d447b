/** Config normalisation: transformers 4 and 5 layouts, RoPE scaling, GQA, biases, BitNet quantization, clear refusals. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { normalizeConfig } from '../../src/runtime-min/config.js';
import { ropeInverseFrequencies } from '../../src/runtime-min/rope.js';
import { fixtureDir, type FixtureName } from '../support/fixtures.js';

function fixtureConfig(name: FixtureName): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(fixtureDir(name), 'config.json'), 'utf8'));
}

const llama = (extra: Record<string, unknown> = {}) => ({ ...fixtureConfig('tinystories-656K'), ...extra });

describe('runtime: config normalisation', () => {
  it('reads a transformers 4 Llama config (top-level rope_theta, head_dim = hidden / heads)', () => {
    const c = normalizeConfig(llama(), 'config.json');
    assert.equal(c.modelType, 'llama');
    assert.equal(c.ropeTheta, 10000);
    assert.deepEqual(c.ropeScaling, { type: 'default' });
    assert.equal(c.headDim, 16);
    assert.equal(c.rmsNormEps, 1e-6);
    assert.equal(c.intermediateSize, 384);
    assert.deepEqual([c.qkvBias, c.outputBias, c.mlpBias], [false, false, false]);
    assert.equal(c.bitnetQuantization, null);
  });

  it('reads transformers 5 configs (rope_parameters) and an explicit head_dim', () => {
    const b = normalizeConfig(fixtureConfig('bitnet-tiny'), 'config.json');
    assert.equal(b.ropeTheta, 500000);
    assert.equal(b.architecture, 'bitnet');
    const l = normalizeConfig({ ...fixtureConfig('llama-256'), num_attention_heads: 8, head_dim: 64 }, 'config.json');
    assert.equal(l.headDim, 64); // not 256 / 8
    assert.equal(l.ropeTheta, 10000);
    assert.equal(l.tieWordEmbeddings, false);
    const { tie_word_embeddings: _, ...noTie } = llama();
    assert.equal(normalizeConfig(noTie, 'c').tieWordEmbeddings, false); // the transformers classes' default
    const { rope_parameters: _r, rms_norm_eps: _e, ...bare } = fixtureConfig('bitnet-tiny');
    assert.deepEqual([normalizeConfig(bare, 'c').ropeTheta, normalizeConfig(bare, 'c').rmsNormEps], [500000, 1e-5]); // BitNetConfig defaults
  });

  it('eos may be an id or a list; generation_config.json overrides bos/eos and carries sampling defaults', () => {
    assert.deepEqual(normalizeConfig(llama({ eos_token_id: [128001, 128009] }), 'config.json').eosTokenIds, [128001, 128009]);
    const c = normalizeConfig(llama(), 'config.json', { bos_token_id: 7, eos_token_id: [2, 9], do_sample: true, temperature: 0.6, top_p: 0.9 });
    assert.equal(c.bosTokenId, 7);
    assert.deepEqual(c.eosTokenIds, [2, 9]);
    assert.deepEqual(c.generation, { doSample: true, temperature: 0.6, topP: 0.9 });
  });

  it('linear RoPE scaling divides every inverse frequency by the factor', () => {
    const base = ropeInverseFrequencies(normalizeConfig(llama(), 'c'));
    const scaled = ropeInverseFrequencies(normalizeConfig(llama({ rope_scaling: { type: 'linear', factor: 4 } }), 'c'));
    for (let j = 0; j < base.length; j++) assert.equal(scaled[j], Math.fround(base[j]! / 4));
  });

  it('llama3 RoPE scaling keeps short wavelengths, slows long ones by the factor and blends the band between', () => {
    const rope = { rope_type: 'llama3', rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const cfg = { ...llama(), hidden_size: 2048, num_attention_heads: 16, num_key_value_heads: 4, rope_parameters: rope };
    const plain = ropeInverseFrequencies(normalizeConfig({ ...cfg, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }, 'c'));
    const scaled = ropeInverseFrequencies(normalizeConfig(cfg, 'c'));
    let kept = 0, slowed = 0, blended = 0;
    for (let j = 0; j < plain.length; j++) {
      const wavelen = (2 * Math.PI) / plain[j]!;
      if (wavelen < 8192 / 4) { assert.equal(scaled[j], plain[j]); kept++; }
      else if (wavelen > 8192 / 1) { assert.ok(Math.abs(scaled[j]! - plain[j]! / 8) <= 1e-7 * plain[j]!); slowed++; }
      else {
        // smooth = (8192/wavelen − 1)/(4 − 1); inv = (1 − smooth)·inv/8 + smooth·inv
        const smooth = (8192 / wavelen - 1) / 3;
        const want = (1 - smooth) * plain[j]! / 8 + smooth * plain[j]!;
        assert.ok(Math.abs(scaled[j]! - want) <= 1e-6 * want, `j=${j}`);
        blended++;
      }
    }
    assert.ok(kept > 0 && slowed > 0 && blended > 0, `${kept}/${slowed}/${blended}`);
  });

  it('knows Qwen2 (q/k/v biases, no o_proj bias) and Mistral (sliding window) and honours attention_bias / mlp_bias', () => {
    const q = normalizeConfig(llama({ model_type: 'qwen2' }), 'c');
    assert.deepEqual([q.qkvBias, q.outputBias], [true, false]);
    assert.equal(normalizeConfig(llama({ model_type: 'mistral', sliding_window: 4096 }), 'c').slidingWindow, 4096);
    const b = normalizeConfig(llama({ attention_bias: true, mlp_bias: true }), 'c');
    assert.deepEqual([b.qkvBias, b.outputBias, b.mlpBias], [true, true, true]);
  });

  it('refuses an unknown architecture, listing the supported ones', () => {
    assert.throws(() => normalizeConfig(llama({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }), '/m/config.json'),
      /^FormatError: \/m\/config.json: unsupported model_type "gpt2" \(architectures \["GPT2LMHeadModel"\]\); supported model_type: llama, mistral, qwen2, bitnet$/);
    assert.throws(() => normalizeConfig({}, '/m/config.json'), /\/m\/config.json: missing key "model_type"; supported model_type: llama/);
  });

  it('names the file and key of a missing or malformed value', () => {
    const { hidden_size: _, ...noHidden } = llama();
    assert.throws(() => normalizeConfig(noHidden, '/m/config.json'), /\/m\/config.json: missing key "hidden_size"/);
    assert.throws(() => normalizeConfig(llama({ num_key_value_heads: 3 }), 'c'), /not a multiple of num_key_value_heads \(3\)/);
    assert.throws(() => normalizeConfig(llama({ vocab_size: '2048' }), 'c'), /"vocab_size" must be a positive integer/);
    assert.throws(() => normalizeConfig(llama({ hidden_act: 'gelu' }), 'c'), /unsupported hidden_act "gelu"; supported: silu, relu2/);
    assert.throws(() => normalizeConfig(llama(), 'c', { eos_token_id: 'x' }, '/m/generation_config.json'), /\/m\/generation_config.json: "eos_token_id" must be a token id/);
  });

  it('refuses RoPE scalings it does not implement, naming them', () => {
    assert.throws(() => normalizeConfig(llama({ rope_scaling: { type: 'yarn', factor: 4 } }), 'c'), /unsupported rope_type "yarn" in "rope_scaling"; supported: default, linear, llama3/);
    assert.throws(() => normalizeConfig(llama({ rope_scaling: { type: 'dynamic', factor: 2 } }), 'c'), /unsupported rope_type "dynamic"/);
    assert.throws(() => normalizeConfig(llama({ rope_scaling: { rope_type: 'llama3', factor: 8 } }), 'c'), /"rope_scaling.low_freq_factor" must be a positive number/);
  });

  it('reads BitNet quantization_config and refuses what transformers refuses', () => {
    const bitnet = fixtureConfig('bitnet-tiny');
    const { quantization_config: _, ...plain } = bitnet;
    assert.equal(normalizeConfig(plain, 'c').bitnetQuantization, null); // transformers then runs plain nn.Linear
    assert.deepEqual(normalizeConfig({ ...bitnet, quantization_config: { quant_method: 'bitnet' } }, 'c').bitnetQuantization, { linearClass: 'bitlinear', mode: 'offline' });
    assert.throws(() => normalizeConfig({ ...bitnet, quantization_config: { quant_method: 'gptq' } }, 'c'), /unsupported quantization_config.quant_method "gptq"; supported: bitnet/);
    assert.throws(() => normalizeConfig({ ...bitnet, quantization_config: { quant_method: 'bitnet', linear_class: 'bitlinear', quantization_mode: 'online' } }, 'c'), /requires linear_class "autobitlinear"/);
  });
});
