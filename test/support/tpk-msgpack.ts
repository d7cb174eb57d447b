/**
 * A deliberately small, strict msgpack decoder written from the msgpack spec, independent of
 * msgpackr: it knows only the standard types and throws on any extension type, so a header it
 * decodes is one that any msgpack library in any language can read.
 */
export function decodePlainMsgpack(bytes: Uint8Array): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > bytes.length) throw new Error(`msgpack: truncated at ${pos}`);
  };
  const u8 = () => { need(1); return bytes[pos++]!; };
  const u16 = () => { need(2); const v = view.getUint16(pos); pos += 2; return v; };
  const u32 = () => { need(4); const v = view.getUint32(pos); pos += 4; return v; };
  const str = (n: number) => { need(n); const s = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(pos, pos + n)); pos += n; return s; };
  const bin = (n: number) => { need(n); const b = bytes.slice(pos, pos + n); pos += n; return b; };
  const arr = (n: number) => Array.from({ length: n }, () => value());
  const map = (n: number) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = value();
      if (typeof key !== 'string') throw new Error('msgpack: non-string map key');
      out[key] = value();
    }
    return out;
  };
  function value(): unknown {
    const b = u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return map(b & 0x0f);
    if ((b & 0xf0) === 0x90) return arr(b & 0x0f);
    if ((b & 0xe0) === 0xa0) return str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(u8());
      case 0xc5: return bin(u16());
      case 0xc6: return bin(u32());
      case 0xca: { need(4); const v = view.getFloat32(pos); pos += 4; return v; }
      case 0xcb: { need(8); const v = view.getFloat64(pos); pos += 8; return v; }
      case 0xcc: return u8();
      case 0xcd: return u16();
      case 0xce: return u32();
      case 0xcf: { need(8); const v = Number(view.getBigUint64(pos)); pos += 8; return v; }
      case 0xd0: { need(1); const v = view.getInt8(pos); pos += 1; return v; }
      case 0xd1: { need(2); const v = view.getInt16(pos); pos += 2; return v; }
      case 0xd2: { need(4); const v = view.getInt32(pos); pos += 4; return v; }
      case 0xd3: { need(8); const v = Number(view.getBigInt64(pos)); pos += 8; return v; }
      case 0xd9: return str(u8());
      case 0xda: return str(u16());
      case 0xdb: return str(u32());
      case 0xdc: return arr(u16());
      case 0xdd: return arr(u32());
      case 0xde: return map(u16());
      case 0xdf: return map(u32());
      default: throw new Error(`msgpack: type byte 0x${b.toString(16)} at ${pos - 1} is not plain msgpack (extension or reserved)`);
    }
  }
  const result = value();
  if (pos !== bytes.length) throw new Error(`msgpack: ${bytes.length - pos} bytes left after the value`);
  return result;
}
