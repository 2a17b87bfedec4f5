/** Berth's version and API version, shown by `berth version`. */
export const BERTH_VERSION = '0.1.0';
export const API_VERSION = 'berth/v1';
