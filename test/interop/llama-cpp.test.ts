/**
 * GGUF exports run in llama.cpp itself (node-llama-cpp's prebuilt CPU build, installed on demand by
 * `npm run llama-cpp:install`; pending with that hint where it is not installed). llama.cpp's logits
 * are compared with transformers' references (reference.json) and with tritpack's own runtime on the
 * same .tpk. They cannot be identical: llama.cpp's TQ1_0/TQ2_0 dot products quantize activations to
 * Q8_K (int8 per 256 values) where the reference keeps float32; the bounds below are a few times the
 * differences measured with llama.cpp v0.5.0 (llama-256: NLL 2.5e-4 from transformers, position-0 logits 4.9e-3, KL from tritpack 1.2e-5, top-1 0.988; tinystories: 5.5e-4, 3.2e-3), and far below what a wrong export gives (a bitnet
 * graph with the wrong activation function, measured in the last test, moves KL by 200×).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { exportGguf } from '../../src/converters/export-gguf.js';
import { loadModel } from '../../src/runtime-min/index.js';
import { fixtureDir, loadReference, type FixtureName } from '../support/fixtures.js';
import { scratchDir } from '../support/interop-models.js';
import { LLAMA_CPP_MISSING, llamaCppInstalled, llamaCppLogits, loadLlamaCpp } from '../support/llama-cpp.js';
import { compareWindows, maxAbsDiff, meanNll } from '../support/runtime-helpers.js';

type Llama = NonNullable<Awaited<ReturnType<typeof loadLlamaCpp>>>;

/**
 * The fixture converted with the 'paper' absmean formula, the one reference.json's ternary_absmean
 * rule states (W/(γ + 1e-5)), so that llama.cpp and transformers run the same codes; config.json
 * edited by `configEdit` where given.
 */
async function convertedPaper(fixture: FixtureName, tag: string, configEdit?: (config: Record<string, unknown>) => void): Promise<string> {
  let input = fixtureDir(fixture);
  if (configEdit) {
    const dir = path.join(scratchDir(), `${fixture}-${tag}-src`);
    mkdirSync(dir, { recursive: true });
    for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) copyFileSync(path.join(input, f), path.join(dir, f));
    const config = JSON.parse(readFileSync(path.join(input, 'config.json'), 'utf8')) as Record<string, unknown>;
    configEdit(config);
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    input = dir;
  }
  const output = path.join(scratchDir(), `${fixture}-${tag}.tpk`);
  await convertCheckpoint({ input, output, formula: 'paper' });
  return output;
}

function gguf(tpk: string, type: 'tq1_0' | 'tq2_0'): string {
  const output = tpk.replace(/\.tpk$/, `-${type}.gguf`);
  exportGguf({ input: tpk, output, type, force: true });
  return output;
}

async function ours(tpk: string, ids: number[]): Promise<Float32Array> {
  const model = await loadModel(tpk, { backend: 'reference' });
  try { return model.logits(ids); } finally { model.close(); }
}

describe('interop: GGUF exports in llama.cpp itself', function () {
  this.timeout(300_000);
  if (!llamaCppInstalled()) {
    it(`llama-256 (TQ1_0, TQ2_0), tinystories-656K (F16 fallback), bitnet-tiny (pending: ${LLAMA_CPP_MISSING})`);
    return;
  }
  let llama: Llama;
  before(async () => { llama = (await loadLlamaCpp())!; });

  it('llama-256, every linear TQ2_0 and TQ1_0: transformers\' ternary NLL and logits, tritpack\'s runtime, and the same bits from both types', async () => {
    const ref = loadReference('llama-256');
    const ids: number[] = ref.sample_ids_first256;
    const V = 2048;
    const tpk = await convertedPaper('llama-256', 'paper');
    const tq2 = await llamaCppLogits(llama, gguf(tpk, 'tq2_0'), ids, V);
    const tq1 = await llamaCppLogits(llama, gguf(tpk, 'tq1_0'), ids, V);
    assert.deepEqual(tq1, tq2, 'the same codes and block scales, whichever packing');
    const want = ref.ternary_absmean.float32;
    assert.ok(Math.abs(meanNll(tq2, ids, V) - want.nll.mean_nll) < 2e-3, `mean NLL ${meanNll(tq2, ids, V)} vs transformers ${want.nll.mean_nll}`);
    assert.ok(maxAbsDiff(tq2.subarray(0, 32), want.logits_pos0_first32) < 0.03, 'position-0 logits');
    const { meanKl, top1Agreement } = compareWindows(await ours(tpk, ids), tq2, V);
    assert.ok(meanKl < 1e-4 && top1Agreement >= 0.95, `against tritpack's runtime: KL ${meanKl}, top-1 ${top1Agreement}`);
  });

  it('tinystories-656K, every linear written as F16 (no row fits a 256-wide TQ block): transformers\' ternary NLL', async () => {
    const ref = loadReference('tinystories-656K');
    const ids: number[] = ref.tokenizer.sample_ids_first512;
    const V = 2048;
    const logits = await llamaCppLogits(llama, gguf(await convertedPaper('tinystories-656K', 'paper'), 'tq2_0'), ids, V);
    const want = ref.ternary_absmean.float32;
    assert.ok(Math.abs(meanNll(logits, ids, V) - want.nll.tinystories_sample.mean_nll) < 3e-3, `mean NLL ${meanNll(logits, ids, V)} vs ${want.nll.tinystories_sample.mean_nll}`);
    assert.ok(maxAbsDiff(logits.subarray(0, 16), want.logits_sample.pos0_first16) < 0.02, 'position-0 logits');
  });

  it('bitnet-tiny: llama.cpp\'s bitnet graph gates the FFN with SiLU, not the relu² the config asks for (why export warns)', async () => {
    const ref = loadReference('bitnet-tiny');
    const ids: number[] = ref.sample_ids_first256;
    const V = 2048;
    const asConfigured = await convertedPaper('bitnet-tiny', 'relu2');
    const logits = await llamaCppLogits(llama, gguf(asConfigured, 'tq2_0'), ids, V);
    const relu2 = compareWindows(await ours(asConfigured, ids), logits, V);
    const silu = compareWindows(await ours(await convertedPaper('bitnet-tiny', 'silu', (c) => { c.hidden_act = 'silu'; }), ids), logits, V);
    assert.ok(silu.meanKl < 1e-3 && silu.top1Agreement >= 0.9, `tritpack with SiLU: KL ${silu.meanKl}, top-1 ${silu.top1Agreement}`);
    assert.ok(relu2.meanKl > 20 * silu.meanKl && relu2.top1Agreement < 0.5, `tritpack with relu² (the model): KL ${relu2.meanKl}, top-1 ${relu2.top1Agreement}`);
  });
});
