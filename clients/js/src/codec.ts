// The two subprotocols as Codec objects: JSON built in, MessagePack made from @msgpack/msgpack's
// encode/decode. The core never imports that package statically: `codec: 'msgpack'` loads it
// with a dynamic import on first connect, and `@evd/client/msgpack` hands over a ready codec.

import type { Codec } from './types.js';

/** `evd.v1.json`: text frames. */
export const JSON_SUBPROTOCOL = 'evd.v1.json';
/** `evd.v1.msgpack`: binary frames of MessagePack maps. */
export const MSGPACK_SUBPROTOCOL = 'evd.v1.msgpack';

export const jsonCodec: Codec = {
  subprotocol: JSON_SUBPROTOCOL,
  encode: (op) => JSON.stringify(op),
  decode: (data) => JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data)),
};

/** A MessagePack codec from a library's encode and decode (those of @msgpack/msgpack). */
export function makeMsgpackCodec(
  encode: (value: unknown) => Uint8Array,
  decode: (bytes: Uint8Array) => unknown,
): Codec {
  return {
    subprotocol: MSGPACK_SUBPROTOCOL,
    encode: (op) => encode(op),
    decode: (data) => {
      if (typeof data === 'string') throw new Error('text frame on an evd.v1.msgpack connection');
      return decode(
        data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      );
    },
  };
}

/** The codec for an option value; `'msgpack'` imports @msgpack/msgpack (an optional peer dependency). */
export async function resolveCodec(codec: 'json' | 'msgpack' | Codec | undefined): Promise<Codec> {
  if (codec == null || codec === 'json') return jsonCodec;
  if (codec !== 'msgpack') return codec;
  const lib = await import('@msgpack/msgpack');
  return makeMsgpackCodec(lib.encode, lib.decode);
}
