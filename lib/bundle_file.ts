/**
 * The one-file bundle a user receives (`florctl enroll user … --out alice.flor`) and installs
 * with `flor join alice.flor`: JSON holding the bundle's files. It contains a private key, so
 * it is written 0600 and should travel like a password.
 */
import { z } from "zod";

export const BUNDLE_FORMAT = "florete-bundle/1";

const FileSchema = z.strictObject({
  path: z.string().regex(/^(?!\/)(?!.*(^|\/)\.\.(\/|$))[A-Za-z0-9._/-]+$/, {
    error: "bundle paths are relative, without '..'",
  }),
  data: z.string(),
  secret: z.boolean(),
});

const BundleFileSchema = z.strictObject({
  format: z.literal(BUNDLE_FORMAT),
  principal: z.string(),
  cluster: z.string(),
  files: z.array(FileSchema).min(1),
});

export type BundleFileContent = Omit<z.infer<typeof BundleFileSchema>, "format">;

export function encodeBundleFile(b: BundleFileContent): string {
  return JSON.stringify({ format: BUNDLE_FORMAT, ...b }, null, 1) + "\n";
}

export class BundleFileError extends Error {
  override name = "BundleFileError";
}

export function decodeBundleFile(text: string): BundleFileContent {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new BundleFileError("not a Florete bundle file (not JSON): ask for a new one");
  }
  const r = BundleFileSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new BundleFileError(
      `not a valid Florete bundle file (${issue.path.join(".") || "top"}: ${issue.message})`,
    );
  }
  const { format: _format, ...rest } = r.data;
  if (!rest.files.some((f) => f.path === "flor.yaml")) {
    throw new BundleFileError("the bundle file has no flor.yaml");
  }
  return rest;
}
