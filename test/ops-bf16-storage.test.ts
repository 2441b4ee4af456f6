// The saved-activation storage ops (OpsBackend::to_bf16 / from_bf16, addon.ops.toBf16 / fromBf16) on every usable
// device, against lib/kernels/bf16.ts (f32ToBf16 / bf16ToF32), bit for bit: ties to even, NaN kept as NaN, ±Inf,
// ±0, subnormals and values that round up into the next binade or to Infinity.
import { bf16ToF32, f32ToBf16 } from '../lib/kernels/bf16';
import { ops } from './helpers/ops-reference';

const st = ops;

function special(): Float32Array {
  const bits = [
    0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffc12345, 0x00000001, 0x807fffff,
    0x3f808000, 0x3f818000, 0x3f808001, 0x3f80ffff, 0x7f7fffff, 0x7f7f8000, 0x477fe000, 0x3fffffff, 0x33800000,
  ];
  const u = new Uint32Array(bits.length + 4000);
  u.set(bits);
  let s = 12345;
  for (let i = bits.length; i < u.length; i++) u[i] = s = (Math.imul(s, 1664525) + 1013904223) >>> 0; // random patterns
  return new Float32Array(u.buffer);
}

describe.each(ops.devices())('bf16 storage on %s', (device) => {
  test('toBf16 rounds like f32ToBf16, fromBf16 widens like bf16ToF32 (bit for bit)', () => {
    const x = special();
    const out = new Uint16Array(x.length);
    st.toBf16({ out, x, device });
    const want = f32ToBf16(x);
    for (let i = 0; i < x.length; i++) {
      const nan = Number.isNaN(x[i]);
      // NaN payloads may differ between implementations; NaN must stay NaN with its sign
      if (nan)
        expect([i, (out[i] & 0x7f80) === 0x7f80 && (out[i] & 0x7f) !== 0, out[i] >> 15]).toEqual([
          i,
          true,
          want[i] >> 15,
        ]);
      else expect([i, out[i]]).toEqual([i, want[i]]);
    }
    const back = new Float32Array(x.length);
    st.fromBf16({ out: back, x: out, device });
    expect(Buffer.from(back.buffer).equals(Buffer.from(bf16ToF32(out).buffer))).toBe(true);
  });

  test('bad arguments are typed errors naming them', () => {
    expect(() => st.toBf16({ out: new Uint16Array(3), x: new Float32Array(4), device })).toThrow(/^x: /);
    expect(() =>
      st.toBf16({ out: new Int16Array(4) as unknown as Uint16Array, x: new Float32Array(4), device }),
    ).toThrow(/^out: must be a Uint16Array/);
    expect(() =>
      st.fromBf16({ out: new Float32Array(2), x: new Float32Array(2) as unknown as Uint16Array, device }),
    ).toThrow(/^x: must be a Uint16Array/);
  });
});
