// Where the package's own files are: its root (package.json) and the embedded base model.
import * as fs from 'fs';
import * as path from 'path';

/** The package's root directory (the nearest ancestor of this file holding package.json). */
export function packageRoot(): string {
  let d = __dirname;
  while (!fs.existsSync(path.join(d, 'package.json'))) {
    const up = path.dirname(d);
    if (up === d) return process.cwd();
    d = up;
  }
  return d;
}

/** The embedded base model's directory (models/tiny-base). */
export function defaultModelDir(): string {
  return path.join(packageRoot(), 'models', 'tiny-base');
}
