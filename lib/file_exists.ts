/**
 * Whether something is at a path: the question `florctl init` (refuse to overwrite a
 * cluster), `flor join`/`leave` (a bundle, a user unit), `florctl enroll` (a release archive)
 * and the release build ask before they act.
 */

/** True when `path` names a file, directory or anything else (links are followed: a dangling
 * link is nothing). False when nothing is there, including when a component of the path is a
 * file. Any other failure (a directory we may not search) is thrown: "cannot tell" must not
 * read as "absent" to a caller about to create or overwrite. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw e;
  }
}
