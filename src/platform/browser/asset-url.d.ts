/** Vite's `?url` imports: the URL of the emitted asset (vite/client declares the same). */
declare module '*?url' {
  const url: string;
  export default url;
}
