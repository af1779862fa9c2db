// Entry point `@evd/client/msgpack`: the `evd.v1.msgpack` codec, ready to pass as
// `new Client({ codec: msgpack })`. It imports @msgpack/msgpack statically, so bundlers and React
// Native's Metro include it without a dynamic import; the core stays free of it.

import { decode, encode } from '@msgpack/msgpack';
import { makeMsgpackCodec } from './codec.js';

export const msgpack = makeMsgpackCodec(encode, decode);
export { MSGPACK_SUBPROTOCOL } from './codec.js';
