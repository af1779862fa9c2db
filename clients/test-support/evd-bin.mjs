// Where the evd binary is: EVD_BIN, required by every test that runs a server. Without it those
// tests fail with this message instead of skipping, so a missing binary is never mistaken for a pass.
import { existsSync } from 'node:fs';

export function evdBin() {
  const bin = process.env.EVD_BIN;
  if (!bin) {
    throw new Error(
      'EVD_BIN is not set: point it at an evd binary (e.g. EVD_BIN=../../target/debug/evd npm test). ' +
        'engine/tests/js_sdk.rs sets it to the binary cargo built.',
    );
  }
  if (!existsSync(bin)) throw new Error(`EVD_BIN=${bin} does not exist`);
  return bin;
}
