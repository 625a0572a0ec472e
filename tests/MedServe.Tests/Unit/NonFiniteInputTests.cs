using MedServe.Inference.Runtime;
using MedServe.Protocol;
using MedServe.Tests.Support;

namespace MedServe.Tests.Unit;

/// <summary>
/// A model that does not take missing values refuses a NaN or an infinity anywhere in an input, naming the first such
/// element: in the vectorised blocks, in the tail after them, and in a value whose other bits are set too.
/// </summary>
public sealed class NonFiniteInputTests
{
    private static readonly RuntimeOptions Cpu = new() { Accelerator = "cpu" };

    public static TheoryData<int, double> Bad => new()
    {
        { 0, double.NaN },
        { 7, double.PositiveInfinity },
        { 8, double.NegativeInfinity },
        { 2049, double.NaN },
        { 4095, double.PositiveInfinity }, // the last element
        { 4090, -double.NaN },
    };

    [Theory]
    [MemberData(nameof(Bad))]
    public void The_first_non_finite_element_is_named_in_FP32_and_FP64(int at, double value)
    {
        using var model = OnnxModel.Load(
            OnnxBuilder.Identity(new("f", TensorDatatype.FP32, [null, 4096]), new("d", TensorDatatype.FP64, [null, 4096])),
            new ModelManifest { Name = "identity", Version = "1" }, Cpu);
        var floats = Enumerable.Range(0, 4096).Select(i => i * 1.5f - 1000f).ToArray();
        var doubles = floats.Select(f => (double)f).ToArray();
        floats[at] = (float)value;
        floats[4095 - (at % 3)] = float.NaN; // a later one is not the one named
        doubles[at] = value;
        var f = TensorTypes.Create<float>("f", [1, 4096], floats);
        var d = TensorTypes.Create<double>("d", [1, 4096], doubles);
        var good = TensorTypes.Create<float>("f", [1, 4096], new float[4096]);
        var goodD = TensorTypes.Create<double>("d", [1, 4096], new double[4096]);

        var error = Assert.Throws<MedServeException>(() => model.Validate(new InferenceRequest([f, goodD])));
        Assert.Equal($"input 'f' has a NaN or infinite value at element {at}; this model does not accept missing values", error.Message);
        error = Assert.Throws<MedServeException>(() => model.Validate(new InferenceRequest([good, d])));
        Assert.Equal($"input 'd' has a NaN or infinite value at element {at}; this model does not accept missing values", error.Message);
        // The largest finite values and subnormals pass.
        var edge = new float[4096];
        edge[5] = float.MaxValue;
        edge[100] = float.MinValue;
        edge[200] = float.Epsilon;
        var edgeD = new double[4096];
        edgeD[9] = double.MaxValue;
        edgeD[300] = -double.Epsilon;
        model.Validate(new InferenceRequest([TensorTypes.Create<float>("f", [1, 4096], edge), TensorTypes.Create<double>("d", [1, 4096], edgeD)]));
    }
}
