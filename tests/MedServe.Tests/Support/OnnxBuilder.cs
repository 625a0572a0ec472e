using System.Text;

namespace MedServe.Tests.Support;

/// <summary>
/// Writes small real ONNX models (protobuf) for tests that need datatypes or shapes the sample models lack:
/// a graph of Identity nodes, one per input, each output named after its input.
/// </summary>
public static class OnnxBuilder
{
    /// <summary>An input: name, ONNX element type and dims (null = symbolic).</summary>
    public sealed record Io(string Name, TensorDatatype Datatype, long?[] Dims);

    /// <summary>Identity model: output <c>{input}_out</c> equals input <c>{input}</c>.</summary>
    public static byte[] Identity(params Io[] inputs)
    {
        var graph = new ProtoWriter();
        foreach (var io in inputs)
        {
            var node = new ProtoWriter().String(1, io.Name).String(2, io.Name + "_out").String(3, "id_" + io.Name).String(4, "Identity");
            graph.Message(1, node);
        }
        graph.String(2, "identity");
        foreach (var io in inputs)
        {
            graph.Message(11, ValueInfo(io.Name, io));
        }
        foreach (var io in inputs)
        {
            graph.Message(12, ValueInfo(io.Name + "_out", io));
        }
        var model = new ProtoWriter()
            .Varint(1, 8)                                       // ir_version
            .String(2, "medserve-tests")                        // producer_name
            .Message(7, graph)                                  // graph
            .Message(8, new ProtoWriter().String(1, "").Varint(2, 13)); // opset_import
        return model.ToArray();
    }

    /// <summary>
    /// Lookup model: output <c>value</c> [N] is <paramref name="table"/>[<c>index</c>] for an INT64 input <c>index</c> [N].
    /// An index outside the table passes every shape check and is refused by ONNX Runtime itself: a poisoned input.
    /// </summary>
    public static byte[] Lookup(float[] table)
    {
        var graph = new ProtoWriter();
        graph.Message(1, new ProtoWriter().String(1, "table").String(1, "index").String(2, "value").String(3, "lookup").String(4, "Gather"));
        graph.String(2, "lookup");
        var data = new ProtoWriter().Varint(1, table.Length).Varint(2, 1).String(8, "table");
        foreach (var v in table)
        {
            data.Fixed32(4, BitConverter.SingleToInt32Bits(v)); // float_data
        }
        graph.Message(5, data);
        graph.Message(11, ValueInfo("index", new Io("index", TensorDatatype.INT64, [null])));
        graph.Message(12, ValueInfo("value", new Io("value", TensorDatatype.FP32, [null])));
        return new ProtoWriter()
            .Varint(1, 8)
            .String(2, "medserve-tests")
            .Message(7, graph)
            .Message(8, new ProtoWriter().String(1, "").Varint(2, 13))
            .ToArray();
    }

    /// <summary>
    /// Reshape model: output <c>y</c> is input <c>x</c> [N] (FP32) reshaped to [-1, <paramref name="columns"/>]. An N
    /// that is not a multiple of the columns passes every shape check (the input is dynamic) and is refused by ONNX
    /// Runtime inside the kernel, with the code <c>Fail</c>: the input's fault, not the runtime's.
    /// </summary>
    public static byte[] Reshape(long columns)
    {
        var graph = new ProtoWriter();
        graph.Message(1, new ProtoWriter().String(1, "x").String(1, "to").String(2, "y").String(3, "reshape").String(4, "Reshape"));
        graph.String(2, "reshape");
        graph.Message(5, new ProtoWriter().Varint(1, 2).Varint(2, 7).Varint(7, -1).Varint(7, columns).String(8, "to"));
        graph.Message(11, ValueInfo("x", new Io("x", TensorDatatype.FP32, [null])));
        graph.Message(12, ValueInfo("y", new Io("y", TensorDatatype.FP32, [null, columns])));
        return Model(graph);
    }

    /// <summary>
    /// Zeros model: output <c>zeros</c> (FP32) has the shape given by the values of input <c>shape</c> (INT64 [2]), as
    /// ConstantOfShape makes it. A shape of [2^30, 2^30] (4 EiB) is an allocation no machine can make: ONNX Runtime
    /// runs out of memory, a runtime failure that is not the input's shape or type.
    /// </summary>
    public static byte[] Zeros()
    {
        var graph = new ProtoWriter();
        graph.Message(1, new ProtoWriter().String(1, "shape").String(2, "zeros").String(3, "zeros").String(4, "ConstantOfShape"));
        graph.String(2, "zeros");
        graph.Message(11, ValueInfo("shape", new Io("shape", TensorDatatype.INT64, [2])));
        graph.Message(12, ValueInfo("zeros", new Io("zeros", TensorDatatype.FP32, [null, null])));
        return Model(graph);
    }

    private static byte[] Model(ProtoWriter graph) => new ProtoWriter()
        .Varint(1, 8)
        .String(2, "medserve-tests")
        .Message(7, graph)
        .Message(8, new ProtoWriter().String(1, "").Varint(2, 13))
        .ToArray();

    private static ProtoWriter ValueInfo(string name, Io io)
    {
        var shape = new ProtoWriter();
        var i = 0;
        foreach (var d in io.Dims)
        {
            var dim = d is { } v ? new ProtoWriter().Varint(1, v) : new ProtoWriter().String(2, $"d{i}");
            shape.Message(1, dim);
            i++;
        }
        var tensorType = new ProtoWriter().Varint(1, ElemType(io.Datatype)).Message(2, shape);
        var type = new ProtoWriter().Message(1, tensorType);
        return new ProtoWriter().String(1, name).Message(2, type);
    }

    private static long ElemType(TensorDatatype t) => t switch
    {
        TensorDatatype.FP32 => 1,
        TensorDatatype.UINT8 => 2,
        TensorDatatype.INT8 => 3,
        TensorDatatype.UINT16 => 4,
        TensorDatatype.INT16 => 5,
        TensorDatatype.INT32 => 6,
        TensorDatatype.INT64 => 7,
        TensorDatatype.BOOL => 9,
        TensorDatatype.FP16 => 10,
        TensorDatatype.FP64 => 11,
        TensorDatatype.UINT32 => 12,
        TensorDatatype.UINT64 => 13,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    private sealed class ProtoWriter
    {
        private readonly MemoryStream _buffer = new();

        public ProtoWriter Varint(int field, long value)
        {
            Tag(field, 0);
            Raw((ulong)value);
            return this;
        }

        public ProtoWriter String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public ProtoWriter Fixed32(int field, int value)
        {
            Tag(field, 5);
            Span<byte> bytes = stackalloc byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
            _buffer.Write(bytes);
            return this;
        }

        public ProtoWriter Message(int field, ProtoWriter message) => Bytes(field, message.ToArray());

        public byte[] ToArray() => _buffer.ToArray();

        private ProtoWriter Bytes(int field, byte[] bytes)
        {
            Tag(field, 2);
            Raw((ulong)bytes.Length);
            _buffer.Write(bytes);
            return this;
        }

        private void Tag(int field, int wireType) => Raw((ulong)((field << 3) | wireType));

        private void Raw(ulong v)
        {
            while (v >= 0x80)
            {
                _buffer.WriteByte((byte)(v | 0x80));
                v >>= 7;
            }
            _buffer.WriteByte((byte)v);
        }
    }
}
