/**
 * The projections of a T5 attention layer that can carry a LoRA adapter (src/model/lora.ts): query,
 * key, value, output. Its own module, free of tensor code, because the wire protocol validates a
 * session's `loraTargets` against it (src/federated/protocol.ts) on the coordinator too.
 */
export const LORA_TARGETS = ['q', 'k', 'v', 'o'] as const;

export type LoraTarget = (typeof LORA_TARGETS)[number];
