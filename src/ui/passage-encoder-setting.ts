/**
 * Which engine embeds this tab's passages (src/corag/passage-encoder-choice.ts): Automatic (ONNX
 * Runtime where it was measured faster, after its equality gate) unless a `?passageEncoder=tfjs|onnx`
 * URL parameter or the `corag.passageEncoder` localStorage value says otherwise — the same
 * pattern as `?backend=` (./backend-setting.ts). The note under the backend banner says what runs.
 */
import { describePassageEncoder, parsePassageEncoderSetting, type PassageEncoderReport, type PassageEncoderSetting } from '../corag/passage-encoder-choice';
import { h } from './dom';

export const PASSAGE_ENCODER_SETTING_KEY = 'corag.passageEncoder';

/** The URL parameter, else the stored setting, else auto (an unknown name in the URL is an error, as for ?backend=). */
export function readPassageEncoderSetting(): PassageEncoderSetting {
  const fromUrl = new URLSearchParams(location.search).get('passageEncoder');
  if (fromUrl) return parsePassageEncoderSetting(fromUrl);
  try {
    return parsePassageEncoderSetting(localStorage.getItem(PASSAGE_ENCODER_SETTING_KEY));
  } catch {
    return 'auto';
  }
}

/** The line under the backend banner: engine, gate result, or why ONNX Runtime was not used. */
export function passageEncoderNote(report: PassageEncoderReport): HTMLElement {
  return h(
    'div',
    {
      class: `banner ${report.fallbackReason ? 'warn' : 'ok'}`,
      id: 'passage-encoder',
      role: 'status',
      'data-engine': report.engine,
    },
    describePassageEncoder(report),
    report.setting === 'auto' ? '' : ` (set with ?passageEncoder=${report.setting} or localStorage ${PASSAGE_ENCODER_SETTING_KEY})`,
  );
}
