/**
 * The bert-tiny fixture's passage side as token rows: its own ids with padding dropped (no
 * tokenizer involved), and PyTorch's embeddings of them. Shared by the Node ONNX test and the
 * browser entry, so both check the same case; no Node APIs (the browser bundle imports it).
 */
import { readTensor, type ParsedSafetensors } from '../../../src/model/safetensors';

export function fixturePassageRows(expected: ParsedSafetensors): { rows: number[][]; reference: Float32Array } {
  const ids = readTensor(expected, 'p_input_ids');
  const mask = readTensor(expected, 'p_attention_mask');
  const reference = readTensor(expected, 'p_embedding').data as Float32Array;
  const [batch, length] = ids.shape;
  const rows = Array.from({ length: batch }, (_, r) => {
    const row: number[] = [];
    for (let j = 0; j < length; j++) if (Number(mask.data[r * length + j]) === 1) row.push(Number(ids.data[r * length + j]));
    return row;
  });
  return { rows, reference };
}
