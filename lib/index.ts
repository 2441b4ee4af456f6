export { lossAndGrad, lossAndGradAsync, METHODS, NEGATIVE_FORMS, REDUCTIONS } from './kernels/loss';
export type { LossOptions, LossResult, DpoOptions, Method, NegativeForm, Reduction, LogitsBuffer } from './kernels/loss';
export { backends, setNumThreads } from './kernels/info';
export type { BackendInfo } from './kernels/info';
export { cuda, DeviceTensor } from './kernels/device';
export { f32ToBf16, bf16ToF32 } from './kernels/bf16';
