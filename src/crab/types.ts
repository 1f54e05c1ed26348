/**
 * The two records every CRAB data source is parsed into, whatever its file format.
 * Ids are strings so corpora with numeric (DPR), hashed (BEIR) or composite (SQuAD) ids all fit.
 */

/** A retrievable passage: about 100 words of text under the title of the document it came from. */
export interface Passage {
  id: string;
  title: string;
  text: string;
}

/** An open-domain question with every gold answer string (EM/F1 take the max over them). */
export interface QAPair {
  id: string;
  question: string;
  answers: string[];
}
