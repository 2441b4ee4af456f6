// One dtype vocabulary (lib/util/dtype.ts): 'fp32' | 'bf16' everywhere in the public API; each deprecated spelling is
// accepted only where it was accepted before, and maps to the one spelling.
import { checkDtype, DTYPES, torchDtype } from '../lib/util/dtype';
import { DEVICE_DTYPES, PRECISIONS } from '../lib';

test('the one spelling: DTYPES, PRECISIONS and DEVICE_DTYPES agree', () => {
  expect([...DTYPES]).toEqual(['fp32', 'bf16']);
  expect([...PRECISIONS]).toEqual([...DTYPES]);
  expect([...DEVICE_DTYPES]).toEqual([...DTYPES]);
});

test('checkDtype: the new spellings pass; deprecated ones map only where allowed', () => {
  expect(checkDtype('dtype', 'fp32')).toBe('fp32');
  expect(checkDtype('dtype', 'bf16')).toBe('bf16');
  expect(checkDtype('dtype', 'f32', ['f32'])).toBe('fp32');
  expect(checkDtype('dtype', 'float32', ['float32', 'bfloat16'])).toBe('fp32');
  expect(checkDtype('dtype', 'bfloat16', ['float32', 'bfloat16'])).toBe('bf16');
  expect(() => checkDtype('dtype', 'f32')).toThrow(/^dtype: must be 'fp32' or 'bf16', got 'f32'$/);
  expect(() => checkDtype('dtype', 'float32', ['f32'])).toThrow(RangeError);
  expect(() => checkDtype('dtype', 'f16', ['f32'])).toThrow(
    /^dtype: must be 'fp32' or 'bf16' \(or the deprecated 'f32'\), got 'f16'$/,
  );
  expect(() => checkDtype('precision', 32)).toThrow(TypeError);
  expect(() => checkDtype('precision', 32)).toThrow(/^precision: /);
});

test("torchDtype: the file format's (HF's) names", () => {
  expect(torchDtype('fp32')).toBe('float32');
  expect(torchDtype('bf16')).toBe('bfloat16');
});
