namespace py odd struct OneLine{1:i32 a 2:string b="x"3:list<i32>c=[1,2]}enum E{X Y=3 Z}const map<string,E>EM={"x":E.X "z":E.Z}service S{void f(1:i32 a 2:E e=E.Y)oneway void g()}
