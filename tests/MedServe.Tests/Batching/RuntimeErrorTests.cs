using MedServe.Inference.Runtime;
using MedServe.Protocol;
using MedServe.Tests.Support;

namespace MedServe.Tests.Batching;

/// <summary>
/// Which ONNX Runtime failures are the input's fault (400, bisected in a batch) and which are the runtime's (503 with
/// Retry-After, never bisected, retried later by jobs): real sessions that fail each way, and the texts ONNX Runtime
/// gives for failures no test machine can make (CUDA, TensorRT).
/// </summary>
public sealed class RuntimeErrorTests
{
    private static readonly RuntimeOptions Cpu = new() { Accelerator = "cpu" };

    private static OnnxModel Load(byte[] onnx, string name) => OnnxModel.Load(onnx, new ModelManifest { Name = name, Version = "1" }, Cpu);

    [Fact]
    public void An_input_the_graph_cannot_reshape_is_the_inputs_fault_though_ONNX_Runtime_calls_it_Fail()
    {
        using var model = Load(OnnxBuilder.Reshape(3), "reshape");
        var error = Assert.Throws<MedServeException>(() => model.RunValidated([TensorTypes.Create<float>("x", [4], [1, 2, 3, 4])], model.OutputNames));
        Assert.Equal(ErrorKind.InvalidInput, error.Kind);
        Assert.Equal(400, ErrorStatus.Of(error.Kind));
        Assert.Equal("reshape:1 rejected the input values (ONNX Runtime Fail)", error.Message); // nothing of ONNX Runtime's text
        // And the same model runs an input that fits.
        Assert.Equal([2L, 3L], model.RunValidated([TensorTypes.Create<float>("x", [6], new float[6])], model.OutputNames).Outputs[0].Shape);
    }

    [Fact]
    public void Running_out_of_memory_is_a_retryable_503_not_the_inputs_fault()
    {
        using var model = Load(OnnxBuilder.Zeros(), "zeros");
        // 2^30 x 2^30 floats: 4 EiB, an allocation that fails on any machine.
        var error = Assert.Throws<MedServeException>(() => model.RunValidated([TensorTypes.Create<long>("shape", [2], [1L << 30, 1L << 30])], model.OutputNames));
        Assert.Equal(ErrorKind.Unavailable, error.Kind);
        Assert.Equal(503, ErrorStatus.Of(error.Kind));
        Assert.True(error.IsRetryable);
        Assert.Equal("zeros:1 could not run the request just now (ONNX Runtime Fail: out of memory); the input is not at fault", error.Message);
        // The session is still good.
        Assert.Equal([2L, 3L], model.RunValidated([TensorTypes.Create<long>("shape", [2], [2, 3])], model.OutputNames).Outputs[0].Shape);
    }

    [Theory]
    // What ONNX Runtime 1.31 answered here (messages shortened): a value the graph refuses, a shape it cannot take.
    [InlineData("[ErrorCode:InvalidArgument] Non-zero status code returned while running Gather node. Name:'lookup' Status Message: indices element out of data bounds, idx=99 must be within the inclusive range [-2,1]", ErrorKind.InvalidInput)]
    [InlineData("[ErrorCode:Fail] Non-zero status code returned while running Reshape node. Name:'r' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:84 The input tensor cannot be reshaped to the requested shape. Input shape:{4}, requested shape:{-1,3}", ErrorKind.InvalidInput)]
    [InlineData("[ErrorCode:Fail] Non-zero status code returned while running ConstantOfShape node. Name:'c' Status Message: /onnxruntime_src/onnxruntime/core/common/safeint.h:17 SafeIntOnOverflow() Integer overflow", ErrorKind.InvalidInput)]
    [InlineData("[ErrorCode:InvalidGraph] This is an invalid model.", ErrorKind.InvalidInput)]
    // A kernel of a GPU provider refusing a shape names the provider in its path: still the input's fault.
    [InlineData("[ErrorCode:Fail] Non-zero status code returned while running Reshape node. Status Message: /onnxruntime_src/onnxruntime/core/providers/cuda/tensor/reshape.cc:40 The input tensor cannot be reshaped", ErrorKind.InvalidInput)]
    // Memory and devices giving out: the runtime's.
    [InlineData("[ErrorCode:Fail] Non-zero status code returned while running ConstantOfShape node. Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:360 Failed to allocate memory for requested buffer of size 4611686018427387904", ErrorKind.Unavailable)]
    [InlineData("[ErrorCode:Fail] bfc_arena.cc:340 Available memory of 0 is smaller than requested bytes of 4194304", ErrorKind.Unavailable)]
    [InlineData("[ErrorCode:RuntimeException] std::bad_alloc", ErrorKind.Unavailable)]
    [InlineData("[ErrorCode:Fail] Non-zero status code returned while running Conv node. Status Message: CUDA failure 2: out of memory ; GPU=0 ; hostname=h ; file=cuda_allocator.cc ; line=47 ; expr=cudaMalloc((void**)&p, size);", ErrorKind.Unavailable)]
    [InlineData("[ErrorCode:Fail] Non-zero status code returned while running Conv node. Status Message: CUDNN failure 4: CUDNN_STATUS_INTERNAL_ERROR ; GPU=0", ErrorKind.Unavailable)]
    [InlineData("[ErrorCode:Fail] [TensorRT EP] failed to run the engine", ErrorKind.Unavailable)]
    [InlineData("[ErrorCode:ShapeInferenceNotRegistered] execution provider failed", ErrorKind.Unavailable)] // native ORT_EP_FAIL (11)
    [InlineData("[ErrorCode:EngineError] the session failed", ErrorKind.Unavailable)]
    [InlineData("[ErrorCode:RuntimeException] Non-zero status code returned while running Add node.", ErrorKind.Unavailable)]
    [InlineData("no code at all", ErrorKind.Unavailable)]
    // No kernel for the case: retrying will not help, and the input is not to blame either.
    [InlineData("[ErrorCode:NotImplemented] Could not find an implementation for Foo(1) node", ErrorKind.Internal)]
    public void ONNX_Runtime_errors_are_classified_by_code_and_for_Fail_by_what_gave_out(string message, ErrorKind expected)
    {
        Assert.Equal(expected, OnnxModel.Classify(message).Kind);
    }
}
