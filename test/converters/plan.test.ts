import assert from 'node:assert/strict';
import path from 'node:path';
import { TritpackError } from '../../src/errors.js';
import {
  declaresTernaryTraining, findAliases, isLinearProjection, isTernaryValued, planConversion, type PlanOptions, type PlanTensorInfo,
} from '../../src/converters/plan.js';
import { fixtureDir, loadReference, type FixtureName } from '../support/fixtures.js';
import { readSafetensorsRaw } from '../support/convert-helpers.js';
import { readFileSync } from 'node:fs';

const DEFAULTS: PlanOptions = { packing: 't158', scale: { kind: 'tensor' } };

function fixtureTensors(name: FixtureName): { infos: PlanTensorInfo[]; metadata: Record<string, string>; config: Record<string, unknown> } {
  const raw = readSafetensorsRaw(path.join(fixtureDir(name), 'model.safetensors'));
  const infos = [...raw.tensors].map(([n, t]) => ({ name: n, dtype: t.dtype as PlanTensorInfo['dtype'], shape: t.shape }));
  const config = JSON.parse(readFileSync(path.join(fixtureDir(name), 'config.json'), 'utf8'));
  return { infos, metadata: raw.metadata, config };
}

function ternarizedNames(infos: PlanTensorInfo[], options: Partial<PlanOptions> = {}): string[] {
  return planConversion(infos, { ...DEFAULTS, ...options }).tensors.filter((t) => t.action === 'ternarize').map((t) => t.name).sort();
}

describe('converters/plan', () => {
  it('ternarizes exactly the 14 projections the tinystories-656K reference ternarized', () => {
    const { infos } = fixtureTensors('tinystories-656K');
    const expected = Object.keys(loadReference('tinystories-656K').ternary_absmean.tensors).sort();
    assert.equal(expected.length, 14);
    assert.deepEqual(ternarizedNames(infos), expected);
    const plan = planConversion(infos, DEFAULTS);
    const head = plan.tensors.find((t) => t.name === 'lm_head.weight')!;
    assert.equal(head.action, 'keep');
    assert.equal(head.encoding, 'F32');
  });

  it('ternarizes exactly the tensors bitnet-tiny marks ternarized (sub-norms stay)', () => {
    const { infos } = fixtureTensors('bitnet-tiny');
    const tensors = loadReference('bitnet-tiny').tensors as Record<string, { ternarized: boolean }>;
    const expected = Object.keys(tensors).filter((n) => tensors[n]!.ternarized).sort();
    assert.equal(expected.length, 14);
    assert.deepEqual(ternarizedNames(infos), expected);
  });

  it('keeps llama-256 embeddings and its untied lm_head', () => {
    const { infos } = fixtureTensors('llama-256');
    const plan = planConversion(infos, DEFAULTS);
    assert.equal(plan.tensors.filter((t) => t.action === 'ternarize').length, 14);
    for (const name of ['lm_head.weight', 'model.embed_tokens.weight', 'model.norm.weight']) {
      assert.equal(plan.tensors.find((t) => t.name === name)!.action, 'keep', name);
    }
  });

  it('recognises projection names of other families and nothing that is not a projection', () => {
    for (const name of [
      'model.layers.3.self_attn.qkv_proj.weight', 'model.layers.3.mlp.gate_up_proj.weight',
      'gpt_neox.layers.0.attention.query_key_value.weight', 'gpt_neox.layers.0.attention.dense.weight',
      'gpt_neox.layers.0.mlp.dense_h_to_4h.weight', 'transformer.h.0.self_attention.query_key_value.weight',
      'transformer.h.0.mlp.dense_4h_to_h.weight', 'model.layers.0.block_sparse_moe.experts.7.w2.weight',
    ]) assert.ok(isLinearProjection(name), name);
    for (const name of [
      'model.layers.0.self_attn.q_norm.weight', 'model.layers.0.self_attn.attn_sub_norm.weight',
      'model.layers.0.self_attn.q_proj.bias', 'model.layers.0.mlp.gate.weight', 'model.embed_tokens.weight',
      'lm_head.weight', 'transformer.h.0.attn.c_attn.weight',
    ]) assert.ok(!isLinearProjection(name), name);
  });

  it('needs a 2-D float tensor for the default rule', () => {
    const infos: PlanTensorInfo[] = [
      { name: 'a.self_attn.q_proj.weight', dtype: 'I8', shape: [4, 4] },
      { name: 'b.self_attn.q_proj.weight', dtype: 'F16', shape: [4, 4, 2] },
      { name: 'c.self_attn.q_proj.weight', dtype: 'BF16', shape: [4, 4] },
    ];
    assert.deepEqual(ternarizedNames(infos), ['c.self_attn.q_proj.weight']);
  });

  it('lets --exclude beat --include beat the default rule, and warns about globs that match nothing', () => {
    const { infos } = fixtureTensors('llama-256');
    const plan = planConversion(infos, {
      ...DEFAULTS, include: ['lm_head.weight', 'nothing.*'], exclude: ['model.layers.1.mlp.*', 'model.layers.0.self_attn.q_proj.weight'],
    });
    const action = (n: string) => plan.tensors.find((t) => t.name === n)!;
    assert.equal(action('lm_head.weight').action, 'ternarize');
    assert.equal(action('lm_head.weight').reason, '--include lm_head.weight');
    assert.equal(action('model.layers.1.mlp.up_proj.weight').action, 'keep');
    assert.equal(action('model.layers.1.mlp.up_proj.weight').reason, '--exclude model.layers.1.mlp.*');
    assert.equal(action('model.layers.0.self_attn.q_proj.weight').action, 'keep');
    assert.equal(action('model.layers.0.self_attn.k_proj.weight').action, 'ternarize');
    assert.equal(plan.tensors.filter((t) => t.action === 'ternarize').length, 14 - 3 - 1 + 1);
    assert.deepEqual(plan.warnings, ['--include nothing.* matches no tensor']);
  });

  it('refuses an --include that cannot be ternarized: a vector, or a tied embedding', () => {
    const { infos, metadata, config } = fixtureTensors('tinystories-656K');
    assert.throws(() => planConversion(infos, { ...DEFAULTS, include: ['model.norm.weight'] }),
      (e: unknown) => e instanceof TritpackError && /model\.norm\.weight .*not a float matrix/.test(e.message));
    const aliases = findAliases(infos.map((t) => t.name), metadata, config);
    assert.throws(() => planConversion(infos, { ...DEFAULTS, include: ['lm_head.weight'], aliases }),
      (e: unknown) => e instanceof TritpackError && /lm_head\.weight, which is tied to model\.embed_tokens\.weight/.test(e.message));
  });

  it('sizes blobs: t158 ceil(n/5), t2 ceil(n/4), one f32 per scale, kept tensors in their encoding', () => {
    const infos: PlanTensorInfo[] = [
      { name: 'x.mlp.up_proj.weight', dtype: 'F16', shape: [3, 7] },
      { name: 'x.norm.weight', dtype: 'F32', shape: [7] },
      { name: 'x.position_ids', dtype: 'I64', shape: [5] },
    ];
    const t158 = planConversion(infos, { packing: 't158', scale: { kind: 'tensor' } }).tensors;
    assert.deepEqual([t158[0]!.dataLength, t158[0]!.action === 'ternarize' && t158[0]!.scalesLength], [5, 4]);
    const t2 = planConversion(infos, { packing: 't2', scale: { kind: 'channel' }, keepDType: 'BF16' }).tensors;
    assert.equal(t2[0]!.dataLength, 6);
    assert.ok(t2[0]!.action === 'ternarize' && t2[0]!.scalesLength === 12 && t2[0]!.scale.count === 3);
    assert.deepEqual([t2[1]!.encoding, t2[1]!.dataLength, t2[1]!.action === 'keep' && t2[1]!.verbatim], ['BF16', 14, false]);
    assert.deepEqual([t2[2]!.encoding, t2[2]!.dataLength], ['I64', 40]); // integers are never converted
    const group = planConversion(infos, { packing: 't2', scale: { kind: 'group', size: 4 } }).tensors[0]!;
    assert.ok(group.action === 'ternarize');
    assert.deepEqual(group.scale, { granularity: 'group', groupSize: 4, count: 6 });
  });

  it('finds tied embeddings: tinystories-656K stores only lm_head, bitnet-tiny only embed_tokens, llama-256 both', () => {
    const tiny = fixtureTensors('tinystories-656K');
    assert.deepEqual(findAliases(tiny.infos.map((t) => t.name), tiny.metadata, tiny.config), { 'model.embed_tokens.weight': 'lm_head.weight' });
    const bitnet = fixtureTensors('bitnet-tiny');
    assert.deepEqual(findAliases(bitnet.infos.map((t) => t.name), bitnet.metadata, bitnet.config), { 'lm_head.weight': 'model.embed_tokens.weight' });
    const llama = fixtureTensors('llama-256');
    assert.deepEqual(findAliases(llama.infos.map((t) => t.name), llama.metadata, llama.config), {});
  });

  it('tells ternary-trained checkpoints from float ones', () => {
    assert.ok(declaresTernaryTraining(fixtureTensors('bitnet-tiny').config));
    assert.ok(!declaresTernaryTraining(fixtureTensors('tinystories-656K').config));
    assert.ok(!declaresTernaryTraining(fixtureTensors('llama-256').config));
    // rows of {−a, 0, a} with a per-row a: dequantized ternary weights
    assert.ok(isTernaryValued(new Float32Array([0.5, -0.5, 0, 0.5, 0, 0.25, -0.25, 0.25]), 2, 4));
    assert.ok(!isTernaryValued(new Float32Array([0.5, -0.5, 0, 0.4]), 1, 4));
  });
});
