/**
 * The per-tensor table recomputes ‖W − code·scale‖F/‖W‖F from the original weights and the packed
 * codes; the converter records its own figure for each tensor (computed from the float weights when it
 * ternarized them). The two must agree for every scale layout the .tpk can hold.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { parseScaleGranularity } from '../../src/converters/ternarize.js';
import { buildTensorTable } from '../../src/validate/tensors.js';
import { fixtureDir, makeTempDir } from '../support/fixtures.js';

describe('validate per-tensor table', () => {
  let temp: ReturnType<typeof makeTempDir>;
  before(() => { temp = makeTempDir(); });
  after(() => temp.cleanup());

  for (const scale of ['tensor', 'channel', 'group:48']) {
    it(`recomputes the converter's relative errors with ${scale} scales`, async () => {
      const original = fixtureDir('tinystories-656K');
      const tpk = path.join(temp.dir, `${scale.replace(':', '-')}.tpk`);
      await convertCheckpoint({ input: original, output: tpk, scale: parseScaleGranularity(scale) });
      const table = buildTensorTable(original, tpk);
      assert.equal(table.rows.length, 14); // 2 layers × q, k, v, o, gate, up, down
      for (const row of table.rows) {
        assert.equal(row.scale, scale);
        assert.ok(row.recomputed, row.name);
        assert.ok(Math.abs(row.relativeError! - row.headerRelativeError!) < 1e-6, `${row.name}: ${row.relativeError} vs ${row.headerRelativeError}`);
        assert.ok(row.relativeError! > 0.3 && row.relativeError! < 0.8, `${row.name}: ${row.relativeError}`);
      }
    });
  }
});
