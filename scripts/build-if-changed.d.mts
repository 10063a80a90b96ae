/** The repository root. */
export declare const ROOT: string;
/** Runs tsc -p tsconfig.build.json when a source is newer than the last build; true when it built. */
export declare function buildIfChanged(options?: { log?: (line: string) => void }): boolean;
