using System.Runtime.InteropServices;

namespace MedServe;

/// <summary>Typed views of <see cref="Tensor"/> buffers and the datatype facts every layer needs.</summary>
public static class TensorTypes
{
    /// <summary>Bytes per element; 0 for BYTES (variable length).</summary>
    public static int ElementSize(this TensorDatatype datatype) => datatype switch
    {
        TensorDatatype.BOOL or TensorDatatype.UINT8 or TensorDatatype.INT8 => 1,
        TensorDatatype.UINT16 or TensorDatatype.INT16 or TensorDatatype.FP16 => 2,
        TensorDatatype.UINT32 or TensorDatatype.INT32 or TensorDatatype.FP32 => 4,
        TensorDatatype.UINT64 or TensorDatatype.INT64 or TensorDatatype.FP64 => 8,
        _ => 0,
    };

    /// <summary>Parses a V2 datatype name (<c>FP32</c>, <c>INT64</c>, ...), case-sensitive as the protocol is.</summary>
    public static bool TryParse(string? text, out TensorDatatype datatype)
    {
        datatype = default;
        return text is not null && text.Length > 0 && char.IsUpper(text[0])
            && Enum.TryParse(text, ignoreCase: false, out datatype) && Enum.IsDefined(datatype);
    }

    /// <summary>The V2 datatype of a CLR element type.</summary>
    public static TensorDatatype DatatypeOf<T>() where T : unmanaged => default(T) switch
    {
        bool => TensorDatatype.BOOL,
        byte => TensorDatatype.UINT8,
        ushort => TensorDatatype.UINT16,
        uint => TensorDatatype.UINT32,
        ulong => TensorDatatype.UINT64,
        sbyte => TensorDatatype.INT8,
        short => TensorDatatype.INT16,
        int => TensorDatatype.INT32,
        long => TensorDatatype.INT64,
        Half => TensorDatatype.FP16,
        float => TensorDatatype.FP32,
        double => TensorDatatype.FP64,
        _ => throw new ArgumentException($"{typeof(T).Name} has no V2 datatype"),
    };

    /// <summary>Makes a tensor from typed values (copied once into the tensor's buffer).</summary>
    public static Tensor Create<T>(string name, long[] shape, ReadOnlySpan<T> values) where T : unmanaged
        => new(name, DatatypeOf<T>(), shape, MemoryMarshal.AsBytes(values).ToArray());

    /// <summary>The tensor's elements as <typeparamref name="T"/>, without copying.</summary>
    public static ReadOnlySpan<T> AsSpan<T>(this Tensor tensor) where T : unmanaged
    {
        if (DatatypeOf<T>() != tensor.Datatype)
        {
            throw new InvalidOperationException($"tensor '{tensor.Name}' is {tensor.Datatype}, not {DatatypeOf<T>()}");
        }
        return MemoryMarshal.Cast<byte, T>(tensor.Data);
    }

    /// <summary>Element <paramref name="index"/> as a double, whatever the datatype.</summary>
    public static double GetDouble(this Tensor tensor, long index)
    {
        var d = tensor.Data.AsSpan();
        var i = checked((int)index);
        return tensor.Datatype switch
        {
            TensorDatatype.BOOL => d[i] != 0 ? 1 : 0,
            TensorDatatype.UINT8 => d[i],
            TensorDatatype.INT8 => (sbyte)d[i],
            TensorDatatype.UINT16 => MemoryMarshal.Cast<byte, ushort>(d)[i],
            TensorDatatype.INT16 => MemoryMarshal.Cast<byte, short>(d)[i],
            TensorDatatype.FP16 => (double)MemoryMarshal.Cast<byte, Half>(d)[i],
            TensorDatatype.UINT32 => MemoryMarshal.Cast<byte, uint>(d)[i],
            TensorDatatype.INT32 => MemoryMarshal.Cast<byte, int>(d)[i],
            TensorDatatype.FP32 => MemoryMarshal.Cast<byte, float>(d)[i],
            TensorDatatype.UINT64 => MemoryMarshal.Cast<byte, ulong>(d)[i],
            TensorDatatype.INT64 => MemoryMarshal.Cast<byte, long>(d)[i],
            TensorDatatype.FP64 => MemoryMarshal.Cast<byte, double>(d)[i],
            _ => throw new InvalidOperationException($"tensor '{tensor.Name}' of {tensor.Datatype} has no numeric elements"),
        };
    }

    /// <summary>Writes <paramref name="value"/> as element <paramref name="index"/> of a buffer of <paramref name="datatype"/>.</summary>
    public static void SetDouble(Span<byte> buffer, TensorDatatype datatype, int index, double value)
    {
        switch (datatype)
        {
            case TensorDatatype.BOOL: buffer[index] = value != 0 ? (byte)1 : (byte)0; break;
            case TensorDatatype.UINT8: buffer[index] = checked((byte)value); break;
            case TensorDatatype.INT8: buffer[index] = unchecked((byte)checked((sbyte)value)); break;
            case TensorDatatype.UINT16: MemoryMarshal.Cast<byte, ushort>(buffer)[index] = checked((ushort)value); break;
            case TensorDatatype.INT16: MemoryMarshal.Cast<byte, short>(buffer)[index] = checked((short)value); break;
            case TensorDatatype.FP16: MemoryMarshal.Cast<byte, Half>(buffer)[index] = (Half)value; break;
            case TensorDatatype.UINT32: MemoryMarshal.Cast<byte, uint>(buffer)[index] = checked((uint)value); break;
            case TensorDatatype.INT32: MemoryMarshal.Cast<byte, int>(buffer)[index] = checked((int)value); break;
            case TensorDatatype.FP32: MemoryMarshal.Cast<byte, float>(buffer)[index] = (float)value; break;
            case TensorDatatype.UINT64: MemoryMarshal.Cast<byte, ulong>(buffer)[index] = checked((ulong)value); break;
            case TensorDatatype.INT64: MemoryMarshal.Cast<byte, long>(buffer)[index] = checked((long)value); break;
            case TensorDatatype.FP64: MemoryMarshal.Cast<byte, double>(buffer)[index] = value; break;
            default: throw new InvalidOperationException($"{datatype} has no numeric elements");
        }
    }

    /// <summary>Makes a tensor of <paramref name="datatype"/> from doubles (used for manifest samples).</summary>
    public static Tensor FromDoubles(string name, TensorDatatype datatype, long[] shape, ReadOnlySpan<double> values)
    {
        var buffer = new byte[values.Length * datatype.ElementSize()];
        for (var i = 0; i < values.Length; i++)
        {
            SetDouble(buffer, datatype, i, values[i]);
        }
        return new Tensor(name, datatype, shape, buffer);
    }

    /// <summary>True for the floating-point datatypes (the ones that can hold NaN).</summary>
    public static bool IsFloat(this TensorDatatype datatype) =>
        datatype is TensorDatatype.FP16 or TensorDatatype.FP32 or TensorDatatype.FP64;
}
